#pragma once
// Socket.IO for IOPaint's web app, over Engine.IO v4 long-polling only (plain HTTP requests,
// no WebSocket upgrade offered): enough for the app to connect, receive "diffusion_progress"
// (one per pass) and "diffusion_finish", and be counted by GET /api/v1/connected_clients.
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "apps/serving/http_server.h"

namespace pconv::serve {

// Engine.IO v4 long-polling sessions (Socket.IO's "/" namespace), enough for IOPaint's web app
// to connect and receive "diffusion_progress" and "diffusion_finish" events.
class SocketIo {
 public:
  explicit SocketIo(std::function<void()> wake) : wake_(std::move(wake)) {}
  // GET or POST /socket.io/?EIO=4&transport=polling[&sid=...].
  http::Response handle(const http::Request& request);
  // Queues an event for every connected session; waiting polls are answered.
  void emit(const std::string& event, const nlohmann::json& data);
  // Sessions with a poll open now or within the last 2 s: the browser tabs connected (a
  // closed tab's poll is dropped at once, so darktable's plugin sees it go within seconds).
  size_t sessions() const;

 private:
  struct Session {
    std::vector<std::string> packets;
    http::Clock::time_point last_seen;
    int polls = 0;  // long polls held open now
  };
  std::function<void()> wake_;
  mutable std::mutex mutex_;
  std::map<std::string, Session> sessions_;
  uint64_t counter_ = 0;
};

}  // namespace pconv::serve
