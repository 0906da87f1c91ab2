#pragma once
// An inpaint-serve server for the serving tests: bound to 127.0.0.1 on a free port, serving from
// its own thread, stopped and joined when it goes out of scope.
#include <httplib.h>

#include <memory>
#include <thread>

#include "apps/serving/inpaint_server.h"

namespace pconv::testing {

struct RunningServer {
  std::unique_ptr<serve::InpaintServer> server;
  std::thread thread;
  int port = 0;
  int read_timeout_s, write_timeout_s;  // of client(); 0 keeps httplib's default

  explicit RunningServer(std::unique_ptr<serve::InpaintServer> s, int read_timeout = 30, int write_timeout = 0)
      : server(std::move(s)), read_timeout_s(read_timeout), write_timeout_s(write_timeout) {
    port = server->bind("127.0.0.1", 0);
    thread = std::thread([this] { server->serve(); });
  }
  ~RunningServer() {
    server->stop();
    thread.join();
  }
  RunningServer(const RunningServer&) = delete;
  RunningServer& operator=(const RunningServer&) = delete;

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(read_timeout_s);
    if (write_timeout_s > 0) c.set_write_timeout(write_timeout_s);
    return c;
  }
};

}  // namespace pconv::testing
