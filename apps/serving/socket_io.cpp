#include "apps/serving/socket_io.h"

#include <algorithm>

#include "apps/serving/iopaint_routes.h"  // query_param
#include "apps/serving/serve_api.h"       // ApiError

namespace pconv::serve {

using nlohmann::json;

http::Response SocketIo::handle(const http::Request& request) {
  http::Response r;
  r.content_type = "text/plain; charset=UTF-8";
  if (query_param(request.query, "EIO") != "4" || query_param(request.query, "transport") != "polling") {
    r.status = 400;
    r.content_type = "application/json";
    r.body = R"({"code":0,"message":"Transport unknown"})";
    return r;
  }
  const std::string sid = query_param(request.query, "sid");
  const auto now = http::Clock::now();
  std::lock_guard<std::mutex> lock(mutex_);
  std::erase_if(sessions_, [&](const auto& s) { return now - s.second.last_seen > std::chrono::seconds(60); });
  if (sid.empty()) {
    if (request.method != "GET") throw ApiError(400, "Engine.IO: a handshake is a GET");
    char id[32];
    std::snprintf(id, sizeof id, "pconv%016llx", static_cast<unsigned long long>(
        (++counter_ * 0x9e3779b97f4a7c15ull) ^ uint64_t(now.time_since_epoch().count())));
    sessions_[id].last_seen = now;
    r.body = "0" + json{{"sid", id}, {"upgrades", json::array()}, {"pingInterval", 25000},
                         {"pingTimeout", 20000}, {"maxPayload", 1000000}}.dump();
    return r;
  }
  auto it = sessions_.find(sid);
  if (it == sessions_.end()) {
    r.status = 400;
    r.content_type = "application/json";
    r.body = R"({"code":1,"message":"Session ID unknown"})";
    return r;
  }
  Session& session = it->second;
  session.last_seen = now;
  if (request.method == "POST") {
    // Packets separated by 0x1e: "40" connects to "/", "3" is a pong, "41" and "1" leave.
    size_t at = 0;
    while (at <= request.body.size()) {
      const size_t end = std::min(request.body.find('\x1e', at), request.body.size());
      const std::string packet = request.body.substr(at, end - at);
      if (packet.rfind("40", 0) == 0) session.packets.push_back("40" + json{{"sid", sid + "n"}}.dump());
      if (packet == "41" || packet == "1") {
        sessions_.erase(it);
        break;
      }
      at = end + 1;
    }
    r.body = "ok";
    return r;
  }
  if (!session.packets.empty()) {
    for (size_t i = 0; i < session.packets.size(); ++i) r.body += (i ? "\x1e" : "") + session.packets[i];
    session.packets.clear();
    return r;
  }
  // Nothing yet: held until an event comes, else a ping after pingInterval. The guard counts
  // the poll as open until the server answers or drops it (it lives in `ready`).
  r.body = "2";
  r.until = now + std::chrono::seconds(25);
  ++session.polls;
  std::shared_ptr<void> guard(static_cast<void*>(this), [this, sid](void*) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto s = sessions_.find(sid);
    if (s != sessions_.end()) {
      --s->second.polls;
      s->second.last_seen = http::Clock::now();
    }
  });
  r.ready = [this, sid, guard]() -> std::optional<http::Response> {
    std::lock_guard<std::mutex> lock(mutex_);
    auto s = sessions_.find(sid);
    if (s == sessions_.end() || s->second.packets.empty()) return std::nullopt;
    http::Response ready;
    ready.content_type = "text/plain; charset=UTF-8";
    for (size_t i = 0; i < s->second.packets.size(); ++i) ready.body += (i ? "\x1e" : "") + s->second.packets[i];
    s->second.packets.clear();
    s->second.last_seen = http::Clock::now();
    return ready;
  };
  return r;
}

void SocketIo::emit(const std::string& event, const json& data) {
  const std::string packet = "42" + (data.is_null() ? json::array({event}) : json::array({event, data})).dump();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [sid, session] : sessions_)
      if (session.packets.size() < 1000) session.packets.push_back(packet);
  }
  if (wake_) wake_();
}

size_t SocketIo::sessions() const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto now = http::Clock::now();
  return size_t(std::count_if(sessions_.begin(), sessions_.end(), [&](const auto& s) {
    return s.second.polls > 0 || now - s.second.last_seen < std::chrono::seconds(2);
  }));
}

}  // namespace pconv::serve
