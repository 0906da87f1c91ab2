#include "apps/serving/serve_access.h"

#include "apps/serving/http_parse.h"
#include "apps/serving/serve_api.h"

namespace pconv::serve {

namespace {

// "localhost:8080" → "localhost", "[::1]:8080" → "[::1]".
std::string host_name(const std::string& host_header) {
  if (!host_header.empty() && host_header[0] == '[') return host_header.substr(0, host_header.find(']') + 1);
  return host_header.substr(0, host_header.find(':'));
}

// Compares without stopping at the first difference, so timing does not tell how much of a
// guessed key was right.
bool same_secret(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

bool same_origin(const http::Request& r, const std::string& origin) {
  const std::string* host = r.header("host");
  return host && (origin == "http://" + *host || origin == "https://" + *host);
}

// Allowed cross-origin: named by --allow-origin, or any with "*".
bool origin_allowed(const AccessSettings& s, const std::string& origin) {
  for (const std::string& o : s.allowed_origins)
    if (o == "*" || o == origin) return true;
  return false;
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  const std::string h = http::lower(host);
  return h == "localhost" || h == "::1" || h == "[::1]" || h.rfind("127.", 0) == 0;
}

http::Response error_response(int status, const std::string& message) {
  http::Response r;
  r.status = status;
  r.body = error_json(message);
  return r;
}

std::optional<http::Response> check_access(const AccessSettings& s, const http::Request& r) {
  if (is_loopback_host(s.bind_host)) {
    const std::string* host = r.header("host");
    if (host && !is_loopback_host(host_name(*host)))
      return error_response(403, "the Host '" + *host + "' is not this server's (it listens on " + s.bind_host +
                                     " only; a page on another name may not use it)");
  }
  const std::string* origin = r.header("origin");
  if (origin && !same_origin(r, *origin) && !origin_allowed(s, *origin))
    return error_response(403, "requests from the web page at " + *origin +
                                   " are not allowed (start inpaint-serve with --allow-origin " + *origin + ")");
  const bool api = r.path.rfind("/api/", 0) == 0 || r.path.rfind("/socket.io/", 0) == 0;
  if (!s.api_key.empty() && api) {
    const std::string* auth = r.header("authorization");
    if (!auth || auth->rfind("Bearer ", 0) != 0 || !same_secret(auth->substr(7), s.api_key)) {
      http::Response refusal = error_response(401, "this server needs its API key: send 'Authorization: Bearer KEY'");
      refusal.headers.emplace_back("WWW-Authenticate", "Bearer");
      return refusal;
    }
  }
  return std::nullopt;
}

http::Response preflight(const AccessSettings& s, const http::Request& r) {
  const std::string* origin = r.header("origin");
  if (!origin || (!same_origin(r, *origin) && !origin_allowed(s, *origin)))
    return error_response(403, "cross-origin requests from " + (origin ? *origin : std::string("(no Origin)")) +
                                   " are not allowed (start inpaint-serve with --allow-origin ORIGIN)");
  http::Response ok;
  ok.status = 204;
  ok.content_type.clear();
  add_cors_headers(s, r, ok);
  const std::string* asked = r.header("access-control-request-headers");
  ok.headers.emplace_back("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
  ok.headers.emplace_back("Access-Control-Allow-Headers", asked ? *asked : "Content-Type, Authorization");
  ok.headers.emplace_back("Access-Control-Max-Age", "600");
  return ok;
}

void add_cors_headers(const AccessSettings& s, const http::Request& r, http::Response& response) {
  const std::string* origin = r.header("origin");
  if (!origin || same_origin(r, *origin) || !origin_allowed(s, *origin)) return;
  response.headers.emplace_back("Access-Control-Allow-Origin", *origin);
  response.headers.emplace_back("Access-Control-Allow-Credentials", "true");
  response.headers.emplace_back("Access-Control-Expose-Headers", "X-Seed, Content-Disposition");
  response.headers.emplace_back("Vary", "Origin");
}

}  // namespace pconv::serve
