// inpaint-serve: the web page where one brushes over a photo and gets it filled, and the
// IOPaint-compatible HTTP API behind it (apps/common/serve_api.h), with the model loaded once.
// Localhost by default; Ctrl-C (or SIGTERM) stops it cleanly.
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <thread>

#include "apps/common/bundled_model.h"
#include "apps/common/cli.h"
#include "apps/common/inpaint_server.h"

using namespace pconv;

int main(int argc, char** argv) {
  CLI::App app{"Serve a web page and an HTTP API (IOPaint's) that fill the holes brushed over photos.",
               "inpaint-serve"};
  std::string model, host = "127.0.0.1", device_name = "cpu", hd_strategy = "crop";
  int port = 8080;
  double max_body_mb = 128, max_megapixels = double(kMaxImagePixels) / 1e6;
  serve::ServerSettings settings;
  app.add_option("--model", model, "checkpoint (.safetensors) written by inpaint-train [default: the bundled model]");
  app.add_option("--host", host, "address to listen on (0.0.0.0: every interface)")->capture_default_str();
  app.add_option("--port", port, "port (0: any free port)")->check(CLI::Range(0, 65535))->capture_default_str();
  app.add_option("--device", device_name, "cpu or cuda")->check(cli::device_validator())->capture_default_str();
  app.add_option("--max-body-mb", max_body_mb, "largest request body, in MiB")->check(cli::positive)->capture_default_str();
  app.add_option("--max-megapixels", max_megapixels, "largest image, in millions of pixels")
      ->check(cli::positive)
      ->capture_default_str();
  app.add_option("--queue", settings.queue, "inpainting requests that may wait while one runs (more: 503)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--timeout", settings.timeout_s, "seconds a request may take, waiting included (then 503)")
      ->check(cli::positive)
      ->capture_default_str();
  app.add_option("--hd-strategy", hd_strategy, "default for requests that name none: crop, resize or original")
      ->check(CLI::IsMember({"crop", "resize", "original"}, CLI::ignore_case))
      ->capture_default_str();

  return cli::run(app, argc, argv, [&] {
    // Signals go to one thread that stops the server; every other thread blocks them.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    settings.limits.max_body_bytes = int64_t(max_body_mb * 1024 * 1024);
    settings.limits.max_pixels = int64_t(max_megapixels * 1e6);
    settings.hd.strategy = inference::parse_hd_strategy(hd_strategy);
    const Device device = cli::parse_device(device_name);
    model = bundled::resolve_model(model, "inpaint-serve");
    std::shared_ptr<PConvUNet> net = inference::load_model(model, device);
    serve::InpaintServer server(serve::model_inpainter(net),
                                serve::model_json(model, net->config(), device_name), settings);
    const int bound = server.bind(host, port);
    const std::string shown_host = host == "0.0.0.0" ? "localhost" : host;
    cli::progress("inpaint-serve: " + net->config().describe() + " from " + model + " on " + device_name);
    cli::progress("inpaint-serve: open http://" + shown_host + ":" + std::to_string(bound) +
                  "/ (API: POST /api/v1/inpaint); Ctrl-C stops");

    std::atomic<bool> served{false};
    std::thread stopper([&] {
      int signal = 0;
      sigwait(&signals, &signal);
      if (served) return;  // woken below
      cli::progress("inpaint-serve: stopping (finishing the requests under way)");
      server.stop();
    });
    server.serve();
    served = true;
    pthread_kill(stopper.native_handle(), SIGTERM);  // a no-op for a stopper that is stopping
    stopper.join();
    cli::progress("inpaint-serve: stopped");
  });
}
