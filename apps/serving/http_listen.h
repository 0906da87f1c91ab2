#pragma once
// The listening socket of apps/serving/http_server.h and the addresses of its clients.
#include <sys/socket.h>

#include <string>

namespace pconv::http {

// A non-blocking socket listening on host:port (port 0: a free one), with SO_REUSEADDR;
// `bound_port` is the port it got. Throws Error("cannot listen on host:port (why)").
int listen_on(const std::string& host, int port, int& bound_port);
// "127.0.0.1", "::1", ... for an accepted client; `loopback` when it is this machine.
std::string peer_address(const sockaddr_storage& addr, bool& loopback);

}  // namespace pconv::http
