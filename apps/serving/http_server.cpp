#include "apps/serving/http_server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "apps/serving/http_listen.h"
#include "apps/serving/http_parse.h"
#include "core/tensor.h"  // Error

namespace pconv::http {

namespace {

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

enum class Phase { Head, Body, Handling, Waiting, Writing, Draining };

struct Connection {
  int fd = -1;
  std::string peer;
  bool loopback = false;
  Phase phase = Phase::Head;
  std::string in, out;
  size_t out_sent = 0;
  Clock::time_point deadline, body_started;
  Request request;
  bool chunked = false, head_only = false, keep_alive = true, peer_eof = false;
  ChunkedDecoder chunks;
  Response waiting;  // a long poll's response while it waits
};

Response plain_error(int status, const std::string& message) {
  Response r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = message + "\n";
  r.close = true;
  return r;
}

}  // namespace

struct Server::Impl {
  Settings settings;
  Response error_text(int status, const std::string& message) {
    Response r = settings.error ? settings.error(status, message) : plain_error(status, message);
    r.close = true;
    return r;
  }
  Check check;
  Handler handler;
  IsHeavy heavy;
  int listener = -1, wake_fd = -1;
  std::atomic<bool> stopping{false};
  std::map<uint64_t, Connection> connections;
  std::atomic<size_t> open{0};
  uint64_t next_id = 1;

  // The worker pool: requests in, answers out (to the loop, which owns the sockets).
  std::mutex mutex;
  std::condition_variable work_ready;
  std::deque<std::pair<uint64_t, Request>> work;
  std::vector<std::pair<uint64_t, Response>> done;
  std::vector<std::thread> workers;
  bool workers_quit = false;

  std::string body_limit_message() const {
    return "the request body is over the limit of " + std::to_string(settings.max_body_bytes) + " bytes";
  }
  void notify() {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd, &one, sizeof one);
  }
  void worker();
  void accept_all();
  void on_readable(uint64_t id, Connection& c);
  void advance(uint64_t id, Connection& c);
  void dispatch(uint64_t id, Connection& c);
  void respond(Connection& c, Response r);
  bool on_writable(Connection& c);  // false: close it
  void close(uint64_t id);
  void loop();
};

void Server::Impl::worker() {
  for (;;) {
    std::pair<uint64_t, Request> job;
    {
      std::unique_lock<std::mutex> lock(mutex);
      work_ready.wait(lock, [this] { return workers_quit || !work.empty(); });
      if (work.empty()) return;
      job = std::move(work.front());
      work.pop_front();
    }
    Response r;
    try {
      r = handler(job.second);
    } catch (const std::exception& e) {
      r = plain_error(500, std::string("internal error: ") + e.what());
    }
    job.second = Request();  // release the body and holds before queueing the answer
    {
      std::lock_guard<std::mutex> lock(mutex);
      done.emplace_back(job.first, std::move(r));
    }
    notify();
  }
}

void Server::Impl::accept_all() {
  for (;;) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    const int fd = ::accept4(listener, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or out of descriptors: the next poll retries
    bool loopback = false;
    const std::string host = peer_address(addr, loopback);
    size_t same_peer = 0;
    for (const auto& [id, c] : connections) same_peer += c.peer == host;
    if (connections.size() >= settings.max_connections || same_peer >= settings.max_connections_per_client) {
      // Over the caps: a one-line refusal if the socket takes it at once, then closed.
      const std::string refusal = serialize(error_text(503, "too many connections from this client"), false, false);
      [[maybe_unused]] ssize_t n = ::send(fd, refusal.data(), refusal.size(), MSG_NOSIGNAL);
      ::close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    Connection& c = connections[next_id++];
    c.fd = fd;
    c.peer = host;
    c.loopback = loopback;
    c.deadline = Clock::now() + seconds(settings.client_timeout_s);
    open = connections.size();
  }
}

void Server::Impl::respond(Connection& c, Response r) {
  if (r.ready) {  // a long poll: held until it has something or its time is up
    c.phase = Phase::Waiting;
    c.waiting = std::move(r);
    return;
  }
  c.waiting = Response();  // a long poll's `ready` (and what it holds) ends with its answer
  c.keep_alive = c.keep_alive && !r.close && !c.peer_eof && c.phase != Phase::Head && c.phase != Phase::Body;
  c.out += serialize(r, c.keep_alive, c.head_only);
  c.phase = Phase::Writing;
  c.deadline = Clock::now() + seconds(settings.write_timeout_s);
  c.request = Request();  // the body and the holds are no longer needed
}

void Server::Impl::dispatch(uint64_t id, Connection& c) {
  c.phase = Phase::Handling;
  if (heavy(c.request)) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      work.emplace_back(id, std::move(c.request));
    }
    work_ready.notify_one();
    return;
  }
  Response r;
  try {
    r = handler(c.request);
  } catch (const std::exception& e) {
    r = error_text(500, std::string("internal error: ") + e.what());
  }
  respond(c, std::move(r));
}

// Moves a connection through its request as far as the bytes it has allow.
void Server::Impl::advance(uint64_t id, Connection& c) {
  if (c.phase == Phase::Head) {
    const size_t end = c.in.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (c.in.size() > settings.max_header_bytes) respond(c, error_text(431, "the request head is too large"));
      return;
    }
    if (end > settings.max_header_bytes) return respond(c, error_text(431, "the request head is too large"));
    c.request = Request();
    c.request.peer = c.peer;
    c.request.peer_loopback = c.loopback;
    if (auto error = parse_head(c.in.substr(0, end), c.request, c.chunked))
      return respond(c, error_text(error->status, error->message));
    c.in.erase(0, end + 4);
    c.head_only = c.request.method == "HEAD";
    const std::string* connection = c.request.header("connection");
    c.keep_alive = !(connection && lower(*connection).find("close") != std::string::npos);
    if (c.request.content_length > settings.max_body_bytes)
      return respond(c, error_text(413, body_limit_message()));
    if (std::optional<Response> refusal = check(c.request)) return respond(c, std::move(*refusal));
    const std::string* expect = c.request.header("expect");
    if (expect && lower(*expect) == "100-continue") c.out += "HTTP/1.1 100 Continue\r\n\r\n";
    c.phase = Phase::Body;
    // The check has granted this much memory: one allocation instead of doubling ones.
    if (c.request.content_length > 0) c.request.body.reserve(size_t(c.request.content_length));
    c.body_started = Clock::now();
    const double expected = c.chunked ? double(settings.max_body_bytes) : double(std::max<int64_t>(c.request.content_length, 0));
    c.deadline = c.body_started + seconds(settings.client_timeout_s + expected / kMinBodyBytesPerSecond);
  }
  if (c.phase == Phase::Body) {
    if (c.chunked) {
      c.chunks.feed(c.in, c.request.body);
      if (c.chunks.failed()) return respond(c, error_text(400, "malformed chunked body"));
      if (int64_t(c.request.body.size()) > settings.max_body_bytes)
        return respond(c, error_text(413, body_limit_message()));
      if (!c.chunks.done()) return;
    } else {
      const size_t want = size_t(std::max<int64_t>(c.request.content_length, 0));
      const size_t n = std::min(want - c.request.body.size(), c.in.size());
      c.request.body.append(c.in, 0, n);
      c.in.erase(0, n);
      if (c.request.body.size() < want) return;
    }
    dispatch(id, c);
  }
}

void Server::Impl::on_readable(uint64_t id, Connection& c) {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
    if (n > 0) {
      c.in.append(buf, size_t(n));
      if (c.in.size() > size_t(1) << 20 && c.phase != Phase::Draining) break;  // parse what came first
      continue;
    }
    if (n == 0) c.peer_eof = true;
    break;
  }
  if (c.phase == Phase::Draining) {
    c.in.clear();
    return;
  }
  advance(id, c);
}

bool Server::Impl::on_writable(Connection& c) {
  while (c.out_sent < c.out.size()) {
    const ssize_t n = ::send(c.fd, c.out.data() + c.out_sent, c.out.size() - c.out_sent, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_sent += size_t(n);
      c.deadline = Clock::now() + seconds(settings.write_timeout_s);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;
  }
  c.out.clear();
  c.out_sent = 0;
  if (c.phase != Phase::Writing) return true;  // a 100 Continue sent while the body comes
  if (!c.keep_alive) {
    // Half-close and read what the client still sends, so that its unread body does not
    // turn our close into a reset that loses the answer.
    ::shutdown(c.fd, SHUT_WR);
    c.phase = Phase::Draining;
    c.deadline = Clock::now() + std::chrono::seconds(2);
    return !c.peer_eof;
  }
  c.phase = Phase::Head;
  c.deadline = Clock::now() + seconds(settings.client_timeout_s);
  return true;
}

void Server::Impl::close(uint64_t id) {
  auto it = connections.find(id);
  if (it == connections.end()) return;
  ::close(it->second.fd);
  connections.erase(it);
  open = connections.size();
}

void Server::Impl::loop() {
  std::optional<Clock::time_point> stop_by;
  std::vector<pollfd> fds;
  std::vector<uint64_t> ids;
  for (;;) {
    if (stopping && !stop_by) {
      stop_by = Clock::now() + std::chrono::seconds(1);
      if (listener >= 0) ::close(listener), listener = -1;
      std::vector<uint64_t> idle;
      for (auto& [id, c] : connections)
        if (c.phase == Phase::Head || c.phase == Phase::Body || c.phase == Phase::Draining) idle.push_back(id);
      for (uint64_t id : idle) close(id);
    }
    if (stop_by && (connections.empty() || Clock::now() >= *stop_by)) break;
    // Answers the workers finished.
    std::vector<std::pair<uint64_t, Response>> finished;
    {
      std::lock_guard<std::mutex> lock(mutex);
      finished.swap(done);
    }
    for (auto& [id, r] : finished) {
      auto it = connections.find(id);
      if (it != connections.end()) respond(it->second, std::move(r));
    }
    // Long polls and deadlines.
    const Clock::time_point now = Clock::now();
    std::vector<uint64_t> expired;
    bool any_waiting = false;
    for (auto& [id, c] : connections) {
      if (c.phase == Phase::Waiting) {
        std::optional<Response> r = c.waiting.ready();
        if (r) {
          // The answer stands in for the held one: it keeps the held one's headers (CORS's
          // Access-Control-Allow-Origin, without which a browser drops a cross-origin poll's events).
          for (const auto& h : c.waiting.headers)
            if (std::none_of(r->headers.begin(), r->headers.end(),
                             [&](const auto& own) { return lower(own.first) == lower(h.first); }))
              r->headers.push_back(h);
        }
        if (!r && (now >= c.waiting.until || stop_by)) r = std::move(c.waiting), r->ready = nullptr;
        if (r) respond(c, std::move(*r));
        else any_waiting = true;
      }
      if (c.phase != Phase::Handling && c.phase != Phase::Waiting && now >= c.deadline) expired.push_back(id);
    }
    for (uint64_t id : expired) {
      Connection& c = connections[id];
      // A client that sent part of a request in time gets told why it is dropped, if it listens.
      if ((c.phase == Phase::Head && !c.in.empty()) || c.phase == Phase::Body) {
        respond(c, error_text(408, "the request did not arrive within the server's time limit"));
        on_writable(c);
      }
      close(id);
    }
    fds.clear();
    ids.clear();
    fds.push_back({wake_fd, POLLIN, 0});
    ids.push_back(0);
    if (listener >= 0) {
      fds.push_back({listener, POLLIN, 0});
      ids.push_back(0);
    }
    for (auto& [id, c] : connections) {
      short events = 0;
      if (c.phase == Phase::Head || c.phase == Phase::Body || c.phase == Phase::Draining) events |= POLLIN;
      // A long poll's client that closes (a browser tab) is dropped at once, not at `until`.
      if (c.phase == Phase::Waiting) events |= POLLRDHUP;
      if (!c.out.empty()) events |= POLLOUT;
      fds.push_back({c.fd, events, 0});
      ids.push_back(id);
    }
    int timeout_ms = any_waiting || stop_by ? 100 : 1000;
    ::poll(fds.data(), nfds_t(fds.size()), timeout_ms);
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      if (fds[i].fd == wake_fd) {
        uint64_t v;
        [[maybe_unused]] ssize_t n = ::read(wake_fd, &v, sizeof v);
        continue;
      }
      if (fds[i].fd == listener) {
        if (!stopping) accept_all();
        continue;
      }
      auto it = connections.find(ids[i]);
      if (it == connections.end()) continue;
      Connection& c = it->second;
      bool keep = true;
      if (c.phase == Phase::Waiting && (fds[i].revents & (POLLRDHUP | POLLHUP | POLLERR))) keep = false;
      if (keep && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
        if (c.phase == Phase::Head || c.phase == Phase::Body || c.phase == Phase::Draining) {
          on_readable(ids[i], c);
          if (c.peer_eof && (c.phase == Phase::Head || c.phase == Phase::Body || c.phase == Phase::Draining))
            keep = false;  // gone before its request was whole, or after its answer
        } else if (fds[i].revents & (POLLERR | POLLHUP)) {
          keep = false;  // gone while its answer was computed: nobody to send it to
        }
      }
      if (keep && !c.out.empty()) keep = on_writable(c);
      // Pipelined or half-closed: the next request may already be here.
      if (keep && c.phase == Phase::Head && !c.in.empty()) {
        advance(ids[i], c);
        if (!c.out.empty()) keep = on_writable(c);
      }
      if (!keep) close(ids[i]);
    }
  }
  std::vector<uint64_t> all;
  for (auto& [id, c] : connections) all.push_back(id);
  for (uint64_t id : all) close(id);
}

Server::Server(Settings settings, Check check, Handler handler, IsHeavy heavy)
    : impl_(std::make_unique<Impl>()) {
  impl_->settings = settings;
  impl_->check = std::move(check);
  impl_->handler = std::move(handler);
  impl_->heavy = std::move(heavy);
  impl_->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (impl_->wake_fd < 0) throw Error(std::string("eventfd: ") + std::strerror(errno));
}

Server::~Server() {
  stop();
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->workers_quit = true;
    impl_->work.clear();
  }
  impl_->work_ready.notify_all();
  for (std::thread& t : impl_->workers) t.join();
  if (impl_->listener >= 0) ::close(impl_->listener);
  ::close(impl_->wake_fd);
}

int Server::bind(const std::string& host, int port) {
  int bound = 0;
  impl_->listener = listen_on(host, port, bound);
  return bound;
}

void Server::serve() {
  Impl& s = *impl_;
  if (s.listener < 0) throw Error("serve: bind() first");
  for (size_t i = 0; i < std::max<size_t>(s.settings.workers, 1); ++i) s.workers.emplace_back([&s] { s.worker(); });
  s.loop();
}

void Server::stop() {
  impl_->stopping = true;
  impl_->notify();
}

void Server::wake() { impl_->notify(); }

size_t Server::open_connections() const { return impl_->open; }

}  // namespace pconv::http
