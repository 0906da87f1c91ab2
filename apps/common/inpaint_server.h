#pragma once
// inpaint-serve's server: cpp-httplib (Debian's libcpp-httplib-dev) serving the page and the
// API of apps/common/serve_api.h. HTTP threads read, check and decode requests and encode the
// answers; one worker thread runs the model, fed by a bounded JobQueue, so the server keeps
// answering (the page, the config, 503 when full) while the model runs. No request reads or
// writes a file.
#include <memory>
#include <string>

#include "apps/common/job_queue.h"
#include "apps/common/serve_api.h"

namespace pconv::serve {

// The inpainting a request asks for, run on the worker thread. `cancelled` turns true when
// the request has given up (time limit) or the server is stopping; between passes the work
// stops with inference::Cancelled. May throw ApiError (e.g. 413 when memory is short).
using Inpainter = std::function<ImageU8(const InpaintRequest& request, const JobQueue::Cancelled& cancelled)>;

// The model's inpainter: inference::inpaint_any_size with the request's HD options, after
// refusing (413) a pass that would not fit in the memory the system has available.
Inpainter model_inpainter(std::shared_ptr<PConvUNet> net);

class InpaintServer {
 public:
  InpaintServer(Inpainter inpainter, nlohmann::json model, ServerSettings settings);
  ~InpaintServer();  // stop()
  InpaintServer(const InpaintServer&) = delete;
  InpaintServer& operator=(const InpaintServer&) = delete;

  // Binds host:port (port 0: a free one) and returns the port; throws Error when it cannot.
  int bind(const std::string& host, int port);
  // Answers requests until stop(); call after bind().
  void serve();
  // From any thread: cancels the inference jobs (their requests get 503), waits for a running
  // pass to end, and makes serve() return once the open requests are answered.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pconv::serve
