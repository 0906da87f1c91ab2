#pragma once
// A small event-driven HTTP/1.1 server for inpaint-serve. One thread owns every socket and
// polls them all (poll(2)), so a client that sends its request one byte at a time, or stalls,
// costs a file descriptor and never a thread: the page, the config and the refusals stay quick
// whatever other clients do. Each phase has a deadline (headers, body, writing, idle
// keep-alive); a client may hold only so many connections. Requests whose headers are complete
// pass a check first (`Check`: refusals such as 413 for a Content-Length over the limit are
// answered before a byte of the body is read); complete requests are answered by `Handler`,
// on the loop thread for cheap routes and on a pool of worker threads for heavy ones. stop()
// returns serve() within about a second whatever the clients do.
//
// Supported: Content-Length and chunked bodies, Expect: 100-continue, keep-alive and
// pipelining (one request at a time per connection), half-closed clients (a request followed
// by FIN is still answered), HEAD. Not supported: HTTP/2, upgrades, trailers' contents.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pconv::http {

using Clock = std::chrono::steady_clock;

struct Request {
  std::string method, target, path, query;  // target = path[?query], as sent
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case
  std::string body;
  std::string peer;                // the client's address
  bool peer_loopback = false;
  int64_t content_length = -1;     // -1: chunked or none
  std::vector<std::shared_ptr<void>> holds;  // what the check reserved; released with the request
  // The first value of a header (name in lower case), or nullptr.
  const std::string* header(const std::string& name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;  // close the connection after this answer
  // A long poll: when set, the answer is sent once `ready()` returns one (asked every 100 ms
  // and after each wake()), with this response's headers added, or, at `until`, this response
  // as it is.
  std::function<std::optional<Response>()> ready;
  Clock::time_point until{};
};

struct Settings {
  int64_t max_body_bytes = int64_t(128) << 20;
  size_t max_header_bytes = 16384;
  // Headers must be complete this long after the connection opens or the previous answer is
  // sent (an idle keep-alive connection closes then); a body must be whole within this long
  // plus its length at kMinBodyBytesPerSecond.
  double client_timeout_s = 10;
  double write_timeout_s = 30;      // without progress in sending an answer
  size_t max_connections = 512;
  size_t max_connections_per_client = 32;
  size_t workers = 4;               // threads for heavy requests
  // The server's own refusals (malformed, too large, too slow); default: one line of text.
  std::function<Response(int status, const std::string& message)> error;
};

// The lowest average rate a body must arrive at once the first client_timeout_s have passed.
constexpr double kMinBodyBytesPerSecond = 64 * 1024;

// Called on the loop thread once a request's headers are complete (body not read): an answer
// to refuse it at once (the connection then closes), or nullopt to read the body. May add
// holds (memory reservations) to the request.
using Check = std::function<std::optional<Response>(Request& request)>;
using Handler = std::function<Response(Request& request)>;
using IsHeavy = std::function<bool(const Request& request)>;

class Server {
 public:
  Server(Settings settings, Check check, Handler handler, IsHeavy heavy);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port (port 0: a free one) and returns the port; throws Error when it cannot.
  int bind(const std::string& host, int port);
  // Answers requests until stop().
  void serve();
  // From any thread (signal-safe it is not): closes the listener, lets answers being sent or
  // computed finish for up to a second, then closes every connection and returns serve().
  void stop();
  // Wakes the loop (long polls whose `ready` may now answer).
  void wake();
  size_t open_connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "Bad Request", "Not Found", ... for the status line.
const char* reason_phrase(int status);

}  // namespace pconv::http
