#include "apps/serving/inpaint_server.h"

#include <chrono>
#include <filesystem>
#include <future>

#include "apps/cli/cli.h"
#include "apps/serving/http_parse.h"
#include "apps/serving/memory_budget.h"
#include "apps/serving/multipart.h"
#include "apps/serving/page.h"
#include "core/available_memory.h"
#include "models/texture_transfer.h"

namespace pconv::serve {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

http::Response json_answer(const json& j) {
  http::Response r;
  r.body = j.dump();
  return r;
}

// What a route's body must be: the 415 refusal comes before a byte of it is read.
enum class Body { None, Json, JsonOrMultipart, Multipart };

struct Route {
  const char* method;
  const char* path;
  Body body;
  bool heavy;  // run on a worker thread (decodes or encodes images, reads or writes files)
};

const Route kRoutes[] = {
    {"GET", "/", Body::None, false},
    {"GET", "/favicon.ico", Body::None, false},  // browsers ask; 204 keeps their console clean
    {"GET", "/api/v1/model", Body::None, false},
    {"POST", "/api/v1/model", Body::Json, true},
    {"GET", "/api/v1/server-config", Body::None, false},
    {"POST", "/api/v1/inpaint", Body::JsonOrMultipart, true},
    {"GET", "/api/v1/inputimage", Body::None, true},
    {"POST", "/api/v1/save_image", Body::Multipart, true},
    {"GET", "/api/v1/connected_clients", Body::None, false},
    {"POST", "/api/v1/adjust_mask", Body::Json, true},
    {"GET", "/api/v1/samplers", Body::None, false},
    {"POST", "/api/v1/gen-info", Body::Multipart, true},
    {"GET", "/api/v1/medias", Body::None, true},
    {"GET", "/api/v1/media_file", Body::None, true},
    {"GET", "/api/v1/media_thumbnail_file", Body::None, true},
    {"GET", "/socket.io/", Body::None, false},
    {"POST", "/socket.io/", Body::None, false},
};

const Route* find_route(const http::Request& r) {
  const std::string method = r.method == "HEAD" ? "GET" : r.method;
  for (const Route& route : kRoutes)
    if (method == route.method && r.path == route.path) return &route;
  return nullptr;
}

bool path_known(const std::string& path) {
  for (const Route& route : kRoutes)
    if (path == route.path) return true;
  return false;
}

std::string media_type(const http::Request& r) {
  const std::string* type = r.header("content-type");
  return type ? http::lower(type->substr(0, type->find(';'))) : "";
}

}  // namespace

Inpainter model_inpainter(std::shared_ptr<PConvUNet> net, const std::string& texture) {
  check_texture_name(texture);
  return [net, texture](const InpaintRequest& request, const std::function<bool()>& cancelled) {
    if (net->device() == Device::CPU) {
      const auto passes = inference::plan_passes(request.mask, request.hd, int64_t(1) << net->config().levels);
      const inference::MemoryCheck memory = inference::check_memory(net->config(), 1, passes);
      if (!memory.fits())
        throw ApiError(413, "inpainting this " + std::to_string(request.image.width) + "×" +
                                std::to_string(request.image.height) + " image with hd_strategy " +
                                inference::hd_strategy_name(request.hd.strategy) + " needs about " +
                                format_bytes(memory.need) + ", the server has " + format_bytes(memory.have) +
                                " available (use Crop or Resize)");
    }
    return apply_texture(request.texture.empty() ? texture : request.texture,
                         inference::inpaint_any_size(*net, request.image, request.mask, request.hd, false, cancelled).composite,
                         request.mask);
  };
}

struct InpaintServer::Impl {
  ServerSettings settings;
  AccessSettings access;
  IopaintSettings iopaint;
  MemoryBudget budget;
  JobQueue queue;
  std::mutex model_mutex;  // guards inpainter and model (switched on the model's thread)
  Inpainter inpainter;
  json model;
  std::unique_ptr<http::Server> http;
  std::unique_ptr<SocketIo> socket_io;
  std::atomic<bool> stopping{false};

  Impl(Inpainter i, json m, ServerSettings s, AccessSettings a, IopaintSettings io)
      : settings(s), access(std::move(a)), iopaint(std::move(io)), budget(s.memory_budget_bytes), queue(s.queue),
        inpainter(std::move(i)), model(std::move(m)) {}

  // With --web-app, GETs outside /api/ and /socket.io/ (the page and favicon too) are its files.
  bool serves_web_app(const http::Request& r) const {
    return !iopaint.web_app.empty() && (r.method == "GET" || r.method == "HEAD") && r.path.rfind("/api/", 0) != 0 &&
           r.path.rfind("/socket.io/", 0) != 0;
  }
  json current_model() {
    std::lock_guard<std::mutex> lock(model_mutex);
    return model;
  }
  std::shared_ptr<void> reserve(int64_t bytes, const std::string& what);
  std::optional<http::Response> check(http::Request& r);
  http::Response handle(http::Request& r);
  http::Response inpaint(http::Request& r);
  http::Response switch_model(const http::Request& r);
  // Runs `job` on the model's thread and waits for it (time limit, stopping: 503).
  template <typename T>
  T run_on_model_thread(std::function<T(const std::function<bool()>&)> job, Clock::time_point deadline);
};

std::shared_ptr<void> InpaintServer::Impl::reserve(int64_t bytes, const std::string& what) {
  if (bytes > budget.total())
    throw ApiError(413, what + " needs " + std::to_string(bytes) + " bytes, over the server's memory budget of " +
                            std::to_string(budget.total()) + " bytes (--memory-budget-mb)");
  std::shared_ptr<void> hold = budget.try_reserve(bytes);
  if (!hold)
    throw ApiError(503, "busy: the server's memory budget is held by other requests; try again later (" + what +
                            " needs " + std::to_string(bytes) + " bytes)");
  return hold;
}

std::optional<http::Response> InpaintServer::Impl::check(http::Request& r) {
  if (r.method == "OPTIONS") return preflight(access, r);
  if (auto refusal = check_access(access, r)) return refusal;
  const Route* route = find_route(r);
  if (!route && !serves_web_app(r)) {
    if (path_known(r.path)) return error_response(405, "method " + r.method + " is not allowed on " + r.path);
    return error_response(404, "no such endpoint: " + r.method + " " + r.path);
  }
  const Body body = route ? route->body : Body::None;
  const std::string type = media_type(r);
  const bool json_ok = body == Body::Json || body == Body::JsonOrMultipart;
  const bool multipart_ok = body == Body::Multipart || body == Body::JsonOrMultipart;
  if (body != Body::None && !(json_ok && type == "application/json") &&
      !(multipart_ok && type == "multipart/form-data"))
    return error_response(415, r.path + " takes " +
                                   (json_ok && multipart_ok ? "application/json or multipart/form-data"
                                    : json_ok               ? "application/json"
                                                            : "multipart/form-data") +
                                   ", not '" + (type.empty() ? "(no Content-Type)" : type) + "'");
  // The body's bytes are held from now until the answer is sent: a chunked body may grow to
  // the limit, so that much is held for it; JSON's base64 is decoded into a second copy of
  // three quarters of its size, held with it.
  int64_t body_bytes = r.content_length >= 0 ? r.content_length : settings.limits.max_body_bytes;
  if (type == "application/json") body_bytes += body_bytes / 4 * 3;
  if (body_bytes > 0) {
    try {
      r.holds.push_back(reserve(body_bytes, "a request body of this size"));
    } catch (const ApiError& e) {
      return error_response(e.status, e.what());
    }
  }
  return std::nullopt;
}

http::Response InpaintServer::Impl::handle(http::Request& r) {
  http::Response answer;
  try {
    const Route* route = find_route(r);
    const std::string path = route ? route->path : "";
    if (serves_web_app(r)) {
      answer = web_app_answer(iopaint.web_app, r.path);
    } else if (path == "/") {
      answer.content_type = "text/html; charset=utf-8";
      answer.body = kPageHtml;
    } else if (path == "/favicon.ico") {
      answer.status = 204;
      answer.content_type.clear();
    } else if (path == "/api/v1/model") {
      answer = r.method == "POST" ? switch_model(r) : json_answer(current_model());
    } else if (path == "/api/v1/server-config") {
      json config = server_config_json(current_model(), settings, queue.waiting());
      config["enableFileManager"] = std::filesystem::is_directory(iopaint.input);
      config["enableAutoSaving"] = !iopaint.output_dir.empty();
      config["disableModelSwitch"] = iopaint.models.size() < 2;
      config["samplers"] = samplers_json();
      json infos = json::array();
      for (const ModelChoice& m : iopaint.models) {
        json info = current_model();
        info["name"] = info["path"] = m.name;
        infos.push_back(info);
      }
      if (!infos.empty()) config["modelInfos"] = infos;
      answer = json_answer(config);
    } else if (path == "/api/v1/inpaint") {
      answer = inpaint(r);
    } else if (path == "/api/v1/inputimage") {
      answer = input_image_answer(iopaint.input, settings.limits);
    } else if (path == "/api/v1/save_image") {
      const std::string* type = r.header("content-type");
      answer = save_image_answer(iopaint.output_dir, type ? *type : "", r.body);
    } else if (path == "/api/v1/connected_clients") {
      answer = json_answer({{"count", socket_io->sessions()}});
    } else if (path == "/api/v1/adjust_mask") {
      answer = adjust_mask_answer(r.body, settings.limits);
    } else if (path == "/api/v1/samplers") {
      answer = json_answer(samplers_json());
    } else if (path == "/api/v1/gen-info") {
      const std::string* type = r.header("content-type");
      answer = gen_info_answer(type ? *type : "", r.body);
    } else if (path == "/api/v1/medias") {
      answer = medias_answer(iopaint, r.query);
    } else if (path == "/api/v1/media_file" || path == "/api/v1/media_thumbnail_file") {
      answer = media_file_answer(iopaint, r.query, settings.limits);
    } else if (path == "/socket.io/") {
      answer = socket_io->handle(r);
    } else {
      answer = error_response(404, "no such endpoint: " + r.method + " " + r.path);
    }
  } catch (const ApiError& e) {
    answer = error_response(e.status, e.what());
  } catch (const inference::Cancelled&) {
    answer = error_response(503, "the server is stopping");
  } catch (const std::bad_alloc&) {
    answer = error_response(503, "the server ran out of memory for this request");
  } catch (const std::exception& e) {
    answer = error_response(500, std::string("inpainting failed: ") + e.what());
  }
  add_cors_headers(access, r, answer);
  return answer;
}

template <typename T>
T InpaintServer::Impl::run_on_model_thread(std::function<T(const std::function<bool()>&)> job,
                                           Clock::time_point deadline) {
  auto promise = std::make_shared<std::promise<T>>();
  std::future<T> result = promise->get_future();
  const auto cancel = std::make_shared<std::atomic<bool>>(false);
  const bool queued = queue.try_submit(
      [job = std::move(job), promise](const JobQueue::Cancelled& cancelled) {
        try {
          if (cancelled()) throw inference::Cancelled();
          promise->set_value(job(cancelled));
        } catch (...) {
          promise->set_exception(std::current_exception());
        }
      },
      cancel);
  if (!queued)
    throw ApiError(503, stopping ? "the server is stopping"
                                 : "busy: " + std::to_string(queue.capacity()) +
                                       " inpainting requests are already waiting; try again later");
  // In slices, so that stopping is noticed at once.
  while (result.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready) {
    if (stopping) {
      cancel->store(true);
      throw inference::Cancelled();
    }
    if (Clock::now() >= deadline) {
      cancel->store(true);
      throw ApiError(503, "the inpainting did not finish within the server's time limit of " +
                              cli::format_seconds(settings.timeout_s));
    }
  }
  return result.get();
}

http::Response InpaintServer::Impl::inpaint(http::Request& r) {
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(settings.timeout_s));
  const Reserve hold = [&](int64_t bytes) { r.holds.push_back(reserve(bytes, "decoding these images")); };
  const std::string* type = r.header("content-type");
  const std::string boundary = multipart_boundary(type ? *type : "");
  auto request = std::make_shared<InpaintRequest>(
      boundary.empty() ? parse_inpaint_request(r.body, settings.limits, settings.hd, hold)
                       : parse_inpaint_multipart(r.body, boundary, settings.limits, settings.hd, hold));
  r.body = std::string();
  ImageU8 result;
  if (hole_ratio(request->mask) == 0.0) {
    result = request->image;  // nothing to do: the image as it came
  } else {
    SocketIo* progress = socket_io.get();
    result = run_on_model_thread<ImageU8>(
        [this, request, progress](const std::function<bool()>& cancelled) {
          Inpainter current;
          {
            std::lock_guard<std::mutex> lock(model_mutex);
            current = inpainter;
          }
          // The inpainter asks `cancelled` before each pass: a progress event each time.
          int step = 0;
          return current(*request, [&] {
            progress->emit("diffusion_progress", {{"step", step++}});
            return cancelled();
          });
        },
        deadline);
    socket_io->emit("diffusion_finish", nullptr);
  }
  const EncodedAnswer encoded = encode_answer(*request, result, settings.quality);
  http::Response answer;
  answer.content_type = encoded.content_type;
  answer.body = encoded.bytes;
  answer.headers.emplace_back("X-Seed", std::to_string(request->seed));
  return answer;
}

http::Response InpaintServer::Impl::switch_model(const http::Request& r) {
  const json body = json::parse(r.body, nullptr, false);
  if (!body.is_object() || !body.contains("name") || !body["name"].is_string())
    throw ApiError(400, "POST /api/v1/model takes {\"name\": \"<model name>\"}");
  const std::string name = body["name"].get<std::string>();
  if (name == current_model().value("name", "")) return json_answer(current_model());
  const ModelChoice* choice = nullptr;
  for (const ModelChoice& m : iopaint.models)
    if (m.name == name) choice = &m;
  if (!choice || !iopaint.load) throw ApiError(404, "no model named '" + name + "' (GET /api/v1/server-config lists them)");
  const ModelChoice chosen = *choice;
  // On the model's thread, so that no pass runs while the model changes.
  run_on_model_thread<bool>(
      [this, chosen](const std::function<bool()>&) {
        LoadedModel loaded = iopaint.load(chosen);
        std::lock_guard<std::mutex> lock(model_mutex);
        inpainter = std::move(loaded.inpainter);
        model = std::move(loaded.info);
        return true;
      },
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(settings.timeout_s)));
  return json_answer(current_model());
}

InpaintServer::InpaintServer(Inpainter inpainter, json model, ServerSettings settings, AccessSettings access,
                             ConnectionSettings connections, IopaintSettings iopaint)
    : impl_(std::make_unique<Impl>(std::move(inpainter), std::move(model), settings, std::move(access),
                                   std::move(iopaint))) {
  Impl& s = *impl_;
  http::Settings h;
  h.max_body_bytes = settings.limits.max_body_bytes;
  h.client_timeout_s = connections.client_timeout_s;
  h.max_connections = connections.max_connections;
  h.max_connections_per_client = connections.max_connections_per_client;
  // Enough workers that requests waiting for the model leave some to decode and encode.
  h.workers = settings.queue + 3;
  h.error = [](int status, const std::string& message) { return error_response(status, message); };
  s.http = std::make_unique<http::Server>(
      h, [&s](http::Request& r) { return s.check(r); }, [&s](http::Request& r) { return s.handle(r); },
      [&s](const http::Request& r) {
        const Route* route = find_route(r);
        return (route && route->heavy) || s.serves_web_app(r);  // the web app's files are read from disk
      });
  http::Server* server = s.http.get();
  s.socket_io = std::make_unique<SocketIo>([server] { server->wake(); });
}

InpaintServer::~InpaintServer() {
  stop();
  impl_->queue.stop();  // waits for a pass under way (its progress events still reach socket_io)
  impl_->http.reset();  // joins the HTTP workers (their requests saw `stopping`)
  impl_->socket_io.reset();
}

int InpaintServer::bind(const std::string& host, int port) {
  impl_->access.bind_host = host;
  return impl_->http->bind(host, port);
}

void InpaintServer::serve() { impl_->http->serve(); }

void InpaintServer::stop() {
  impl_->stopping = true;
  impl_->http->stop();
}

}  // namespace pconv::serve
