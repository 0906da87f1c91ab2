#include "apps/common/inpaint_server.h"

#include <httplib.h>

#include <chrono>
#include <future>

#include "apps/common/page.h"

namespace pconv::serve {

namespace {

using Clock = std::chrono::steady_clock;

std::string fmt_gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", double(bytes) / double(int64_t(1) << 30));
  return buf;
}

std::string fmt_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", s);
  return buf;
}

void answer_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(error_json(message), "application/json");
}

// The one result a job hands to its request.
struct Outcome {
  std::promise<ImageU8> promise;
};

}  // namespace

Inpainter model_inpainter(std::shared_ptr<PConvUNet> net) {
  return [net](const InpaintRequest& request, const JobQueue::Cancelled& cancelled) {
    if (net->device() == Device::CPU) {
      int64_t need = 0;
      const auto passes = inference::plan_passes(request.mask, request.hd, int64_t(1) << net->config().levels);
      for (const inference::Pass& p : passes)
        need = std::max(need, inference::forward_memory_bytes(net->config(), 1, p.pass_height, p.pass_width));
      const int64_t have = inference::available_memory_bytes();
      if (have >= 0 && need > have)
        throw ApiError(413, "inpainting this " + std::to_string(request.image.width) + "×" +
                                std::to_string(request.image.height) + " image with hd_strategy " +
                                inference::hd_strategy_name(request.hd.strategy) + " needs about " + fmt_gib(need) +
                                ", the server has " + fmt_gib(have) + " available (use Crop or Resize)");
    }
    return inference::inpaint_any_size(*net, request.image, request.mask, request.hd, false, cancelled).composite;
  };
}

struct InpaintServer::Impl {
  Inpainter inpainter;
  nlohmann::json model;
  ServerSettings settings;
  JobQueue queue;
  httplib::Server http;
  // serve() and stop() may race (a Ctrl-C right at the start): each sets its flag, then reads
  // the other's, so at least one of them sees that the other has come.
  std::atomic<bool> serving{false}, stopped{false};

  Impl(Inpainter i, nlohmann::json m, ServerSettings s)
      : inpainter(std::move(i)), model(std::move(m)), settings(s), queue(s.queue) {}

  void routes();
  void inpaint(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader);
};

void InpaintServer::Impl::routes() {
  http.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kPageHtml, "text/html; charset=utf-8");
  });
  http.Get("/api/v1/model", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(model.dump(), "application/json");
  });
  http.Get("/api/v1/server-config", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(server_config_json(model, settings, queue.waiting()).dump(), "application/json");
  });
  http.Post("/api/v1/inpaint",
            [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
              try {
                inpaint(req, res, reader);
              } catch (const ApiError& e) {
                answer_error(res, e.status, e.what());
              } catch (const inference::Cancelled&) {
                answer_error(res, 503, "the server is stopping");
              } catch (const std::bad_alloc&) {
                answer_error(res, 503, "the server ran out of memory for this request");
              } catch (const std::exception& e) {
                answer_error(res, 500, std::string("inpainting failed: ") + e.what());
              }
            });
  // Everything else (unknown paths, httplib's own 400 and 413) answers in the API's JSON.
  http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404)
      answer_error(res, 404, "no such endpoint: " + req.method + " " + req.path);
    else if (res.status == 413)
      answer_error(res, 413, "the request body is over the limit of " + std::to_string(settings.limits.max_body_bytes) +
                                 " bytes");
    else
      answer_error(res, res.status, res.status == 400 ? "bad request" : "HTTP error " + std::to_string(res.status));
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    answer_error(res, 500, "internal error");
  });
}

void InpaintServer::Impl::inpaint(const httplib::Request&, httplib::Response& res, const httplib::ContentReader& reader) {
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(settings.timeout_s));
  // Read with a bound of our own: chunked bodies have no Content-Length to refuse up front.
  std::string body;
  bool too_large = false;
  const bool complete = reader([&](const char* data, size_t n) {
    too_large = body.size() + n > size_t(settings.limits.max_body_bytes);
    if (!too_large) body.append(data, n);
    return !too_large;  // false stops the reading
  });
  // httplib refuses a Content-Length over the limit itself, with status 413.
  if (too_large || (!complete && res.status == 413))
    throw ApiError(413, "the request body is over the limit of " + std::to_string(settings.limits.max_body_bytes) +
                            " bytes");
  if (!complete) throw ApiError(400, "the request body could not be read whole");
  auto request = std::make_shared<InpaintRequest>(parse_inpaint_request(body, settings.limits, settings.hd));
  body = std::string();
  if (hole_ratio(request->mask) == 0.0) {  // nothing to do: the image as it came
    res.set_content(encode_png(request->image), "image/png");
    return;
  }
  auto outcome = std::make_shared<Outcome>();
  std::future<ImageU8> result = outcome->promise.get_future();
  const auto cancel = std::make_shared<std::atomic<bool>>(false);
  const bool queued = queue.try_submit(
      [this, request, outcome](const JobQueue::Cancelled& cancelled) {
        try {
          if (cancelled()) throw inference::Cancelled();
          outcome->promise.set_value(inpainter(*request, cancelled));
        } catch (...) {
          outcome->promise.set_exception(std::current_exception());
        }
      },
      cancel);
  if (!queued)
    throw ApiError(503, "busy: " + std::to_string(queue.capacity()) +
                            " inpainting requests are already waiting; try again later");
  if (result.wait_until(deadline) != std::future_status::ready) {
    cancel->store(true);
    throw ApiError(503, "the inpainting did not finish within the server's time limit of " +
                            fmt_seconds(settings.timeout_s));
  }
  ImageU8 image = result.get();
  res.set_content(encode_png(image), "image/png");
}

InpaintServer::InpaintServer(Inpainter inpainter, nlohmann::json model, ServerSettings settings)
    : impl_(std::make_unique<Impl>(std::move(inpainter), std::move(model), settings)) {
  Impl& s = *impl_;
  // Enough HTTP threads that requests waiting for the model leave some to answer the page,
  // the config and the 503s.
  const size_t threads = settings.queue + 4;
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.http.set_payload_max_length(size_t(settings.limits.max_body_bytes));
  // SO_REUSEADDR (a restart may bind while old connections linger) but not httplib's default
  // SO_REUSEPORT, with which a second server on the same port would start and share it.
  s.http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  s.http.set_read_timeout(30);
  s.http.set_write_timeout(30);
  s.routes();
}

InpaintServer::~InpaintServer() { stop(); }

int InpaintServer::bind(const std::string& host, int port) {
  const int bound = port == 0 ? impl_->http.bind_to_any_port(host) : (impl_->http.bind_to_port(host, port) ? port : -1);
  if (bound <= 0)
    throw Error("cannot listen on " + host + ":" + std::to_string(port) +
                " (the port is in use, or the address is not one of this machine's)");
  return bound;
}

void InpaintServer::serve() {
  impl_->serving = true;
  if (!impl_->stopped) impl_->http.listen_after_bind();
  impl_->serving = false;
}

void InpaintServer::stop() {
  Impl& s = *impl_;
  s.stopped = true;
  s.queue.stop();
  // httplib ignores stop() until its accept loop runs.
  if (s.serving)
    while (!s.http.is_running() && s.serving) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  s.http.stop();
}

}  // namespace pconv::serve
