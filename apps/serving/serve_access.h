#pragma once
// Who may use inpaint-serve. IOPaint lets every origin in; pconv must not let a web page the
// user happens to visit use the local server, so:
//  - Host: when bound to a loopback address, a request must name localhost, 127.0.0.1 or [::1]
//    (a DNS-rebinding page reaches 127.0.0.1 under its own name, and says so in Host);
//  - Origin: a browser's cross-origin request is refused unless --allow-origin names its
//    origin ("*": any origin, for trusted networks only); same-origin requests (the page) pass;
//  - API key: with --api-key, /api/ and /socket.io/ need "Authorization: Bearer KEY" (for
//    --host 0.0.0.0, where anyone on the network can connect);
//  - CORS: preflights (OPTIONS) of allowed origins are answered; their answers carry
//    Access-Control-Allow-Origin and expose X-Seed, as IOPaint's do.
// Requests without Origin (curl, Krita's and darktable's plugins) are not browsers' cross-site
// requests and pass the origin check.
#include <optional>
#include <string>
#include <vector>

#include "apps/serving/http_server.h"

namespace pconv::serve {

struct AccessSettings {
  std::string bind_host = "127.0.0.1";       // --host
  std::vector<std::string> allowed_origins;  // --allow-origin, "*" for any
  std::string api_key;                       // --api-key; empty: none
};

bool is_loopback_host(const std::string& host);  // localhost, 127.0.0.0/8, ::1, [::1]

// The refusal (403 Host or Origin, 401 key) for a request, or nullopt when it may proceed.
std::optional<http::Response> check_access(const AccessSettings& settings, const http::Request& request);
// The answer to a CORS preflight (OPTIONS): 204 with the allowed method and headers for an
// allowed origin, 403 otherwise.
http::Response preflight(const AccessSettings& settings, const http::Request& request);
// Adds Access-Control-* headers to an answer for an allowed cross-origin request.
void add_cors_headers(const AccessSettings& settings, const http::Request& request, http::Response& response);

// A JSON error answer in IOPaint's shape.
http::Response error_response(int status, const std::string& message);

}  // namespace pconv::serve
