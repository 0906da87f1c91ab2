#pragma once
// inpaint-serve's server: the page and the API of apps/serving/serve_api.h over the
// event-driven HTTP server of apps/serving/http_server.h. Cheap routes (the page, the config,
// refusals) are answered on the I/O thread; heavy ones (decoding, encoding) on worker threads;
// one more thread runs the model, fed by a bounded JobQueue, so the server keeps answering
// while the model runs. Requests hold their bodies and images against a memory budget.
// Only --input and --web-app (read) and --output-dir (save_image) touch files.
#include <memory>
#include <string>

#include "apps/serving/iopaint_routes.h"
#include "apps/serving/job_queue.h"
#include "apps/serving/serve_access.h"
#include "apps/serving/serve_api.h"
#include "apps/serving/socket_io.h"

namespace pconv::serve {

// The model's inpainter: inference::inpaint_any_size with the request's HD options, after
// refusing (413) a pass that would not fit in the memory the system has available.
// texture: what a request that does not name one gets ("none", or "transfer": the holes get
// models/texture_transfer.h's detail); a request's "texture" field overrides it.
Inpainter model_inpainter(std::shared_ptr<PConvUNet> net, const std::string& texture = "none");

// Connections: how long a client may take, how many it may hold.
struct ConnectionSettings {
  double client_timeout_s = 10;  // headers within this; bodies within this + length at 64 KiB/s
  size_t max_connections_per_client = 32;
  size_t max_connections = 512;
};

class InpaintServer {
 public:
  InpaintServer(Inpainter inpainter, nlohmann::json model, ServerSettings settings, AccessSettings access = {},
                ConnectionSettings connections = {}, IopaintSettings iopaint = {});
  ~InpaintServer();  // stop()
  InpaintServer(const InpaintServer&) = delete;
  InpaintServer& operator=(const InpaintServer&) = delete;

  // Binds host:port (port 0: a free one) and returns the port; throws Error when it cannot.
  int bind(const std::string& host, int port);
  // Answers requests until stop(); call after bind().
  void serve();
  // From any thread: cancels the inference jobs (their requests get 503) and makes serve()
  // return within about a second, whatever the clients do. A pass under way ends at the
  // destructor (the model cannot be interrupted inside a pass).
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pconv::serve
