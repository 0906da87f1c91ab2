// inpaint-serve: the web page where one brushes over a photo and gets it filled, and the
// IOPaint-compatible HTTP API behind it (apps/serving/serve_api.h), with the model loaded once.
// Localhost by default; Ctrl-C (or SIGTERM) stops it within a second or two, a second one at once.
#include <CLI/CLI.hpp>

#include "apps/cli/cli.h"
#include "apps/serving/run_server.h"

using namespace pconv;

int main(int argc, char** argv) {
  CLI::App app{"Serve a web page and an HTTP API (IOPaint's) that fill the holes brushed over photos.",
               "inpaint-serve"};
  serve::RunServerOptions o;
  app.add_option("--model", o.model, "checkpoint (.safetensors) written by inpaint-train [default: the bundled model]");
  app.add_option("--host", o.host, "address to listen on (0.0.0.0: every interface)")->capture_default_str();
  app.add_option("--port", o.port, "port (0: any free port)")->check(CLI::Range(0, 65535))->capture_default_str();
  app.add_option("--device", o.device_name, "cpu or cuda")->check(cli::device_validator())->capture_default_str();
  app.add_option("--texture", o.texture,
                 "transfer: give every fill the fine detail of the photo's own known pixels (inpaint-run --texture)")
      ->check(CLI::IsMember({"none", "transfer"}))
      ->capture_default_str();
  app.add_option("--max-body-mb", o.max_body_mb, "largest request body, in MiB")->check(cli::positive)->capture_default_str();
  app.add_option("--max-megapixels", o.max_megapixels, "largest image, in millions of pixels")
      ->check(cli::positive)
      ->capture_default_str();
  app.add_option("--queue", o.settings.queue, "inpainting requests that may wait while one runs (more: 503)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--timeout", o.settings.timeout_s, "seconds a request may take, waiting included (then 503)")
      ->check(cli::positive)
      ->capture_default_str();
  app.add_option("--hd-strategy", o.hd_strategy, "default for requests that name none: crop, resize or original")
      ->check(CLI::IsMember(inference::kHdStrategyNames, CLI::ignore_case))
      ->capture_default_str();
  app.add_option("--quality", o.settings.quality, "JPEG (and lossy WebP) answers' quality, 1-100")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  app.add_option("--memory-budget-mb", o.memory_budget_mb,
                 "memory requests may hold at once (bodies, decoded images), in MiB [default: half the memory "
                 "available at start, at least 1 GiB]")
      ->check(cli::positive);
  app.add_option("--allow-origin", o.access.allowed_origins,
                 "let web pages from ORIGIN (e.g. http://localhost:5173) use the API; repeatable; '*' lets any "
                 "web site the browser visits use it");
  app.add_option("--api-key", o.access.api_key, "require 'Authorization: Bearer KEY' on /api/ (use with --host 0.0.0.0)");
  app.add_option("--client-timeout", o.connections.client_timeout_s,
                 "seconds a client may take to send its request headers (bodies: this + 1 s per 64 KiB)")
      ->check(cli::positive)
      ->capture_default_str();
  app.add_option("--max-connections-per-client", o.connections.max_connections_per_client,
                 "open connections one address may hold")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  app.add_option("--input", o.iopaint.input, "a photo (GET /api/v1/inputimage) or a folder (IOPaint's file manager), as IOPaint's --input")
      ->check(CLI::ExistingPath);
  app.add_option("--output-dir", o.iopaint.output_dir, "folder POST /api/v1/save_image writes into")
      ->check(CLI::ExistingDirectory);
  app.add_option("--model-dir", o.model_dir, "folder of .safetensors models that clients may switch to by name")
      ->check(CLI::ExistingDirectory);
  app.add_option("--web-app", o.iopaint.web_app,
                 "serve this built web app at / instead of pconv's page: IOPaint's web_app/dist (its index.html "
                 "and assets; the API stays at /api/v1)")
      ->check(CLI::ExistingDirectory);

  return cli::run(app, argc, argv, [&] { serve::run_server(o); });
}
