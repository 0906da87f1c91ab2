// inpaint-serve: the web page where one brushes over a photo and gets it filled, and the
// IOPaint-compatible HTTP API behind it (apps/serving/serve_api.h), with the model loaded once.
// Localhost by default; Ctrl-C (or SIGTERM) stops it within a second or two, a second one at once.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <filesystem>
#include <thread>

#include "apps/cli/cli.h"
#include "apps/inference/bundled_model.h"
#include "apps/serving/inpaint_server.h"

using namespace pconv;

namespace {

// The models POST /api/v1/model may switch to, by file stem: the one loaded, the bundled one,
// and every .safetensors in --model-dir (the first of a stem wins).
std::vector<serve::ModelChoice> model_choices(const std::string& current, const std::string& model_dir) {
  std::vector<serve::ModelChoice> choices;
  auto add = [&](const std::filesystem::path& p) {
    for (const auto& c : choices)
      if (c.name == p.stem().string()) return;
    choices.push_back({p.stem().string(), p.string()});
  };
  add(current);
  if (const std::string bundled = bundled::find_model(); !bundled.empty()) add(bundled);
  if (!model_dir.empty()) {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(model_dir))
      if (e.is_regular_file() && e.path().extension() == ".safetensors") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) add(f);
  }
  return choices;
}

}  // namespace

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
      ->check(CLI::IsMember(inference::kHdStrategyNames, CLI::ignore_case))
      ->capture_default_str();
  app.add_option("--quality", settings.quality, "JPEG (and lossy WebP) answers' quality, 1-100")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  double memory_budget_mb = 0;
  app.add_option("--memory-budget-mb", memory_budget_mb,
                 "memory requests may hold at once (bodies, decoded images), in MiB [default: half the memory "
                 "available at start, at least 1 GiB]")
      ->check(cli::positive);
  serve::AccessSettings access;
  app.add_option("--allow-origin", access.allowed_origins,
                 "let web pages from ORIGIN (e.g. http://localhost:5173) use the API; repeatable; '*' lets any "
                 "web site the browser visits use it");
  app.add_option("--api-key", access.api_key, "require 'Authorization: Bearer KEY' on /api/ (use with --host 0.0.0.0)");
  serve::ConnectionSettings connections;
  app.add_option("--client-timeout", connections.client_timeout_s,
                 "seconds a client may take to send its request headers (bodies: this + 1 s per 64 KiB)")
      ->check(cli::positive)
      ->capture_default_str();
  app.add_option("--max-connections-per-client", connections.max_connections_per_client,
                 "open connections one address may hold")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  serve::IopaintSettings iopaint;
  std::string model_dir;
  app.add_option("--input", iopaint.input, "a photo (GET /api/v1/inputimage) or a folder (IOPaint's file manager), as IOPaint's --input")
      ->check(CLI::ExistingPath);
  app.add_option("--output-dir", iopaint.output_dir, "folder POST /api/v1/save_image writes into")
      ->check(CLI::ExistingDirectory);
  app.add_option("--model-dir", model_dir, "folder of .safetensors models that clients may switch to by name")
      ->check(CLI::ExistingDirectory);

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
    const int64_t available = inference::available_memory_bytes();
    settings.memory_budget_bytes = memory_budget_mb > 0 ? int64_t(memory_budget_mb * 1024 * 1024)
                                   : available > 0      ? std::max(available / 2, int64_t(1) << 30)
                                                        : int64_t(4) << 30;
    iopaint.models = model_choices(model, model_dir);
    iopaint.load = [device, device_name](const serve::ModelChoice& choice) {
      std::shared_ptr<PConvUNet> loaded = inference::load_model(choice.path, device);
      return serve::LoadedModel{serve::model_inpainter(loaded),
                                serve::model_json(choice.name, loaded->config(), device_name)};
    };
    const std::string name = std::filesystem::path(model).stem().string();
    auto owned = std::make_unique<serve::InpaintServer>(serve::model_inpainter(net),
                                                        serve::model_json(name, net->config(), device_name), settings,
                                                        access, connections, iopaint);
    serve::InpaintServer& server = *owned;
    const int bound = server.bind(host, port);
    const std::string shown_host = host == "0.0.0.0" ? "localhost" : host;
    cli::progress("inpaint-serve: " + net->config().describe() + " from " + model + " on " + device_name);
    cli::progress("inpaint-serve: open http://" + shown_host + ":" + std::to_string(bound) + "/" +
                  (access.api_key.empty() ? "" : "#key=<your --api-key>") + " (API: POST /api/v1/inpaint); Ctrl-C stops");
    if (!serve::is_loopback_host(host) && access.api_key.empty())
      cli::progress("inpaint-serve: warning: listening on " + host + " without --api-key: anyone who can reach it "
                    "can use it");

    std::atomic<bool> served{false};
    std::thread stopper([&] {
      int signal = 0;
      sigwait(&signals, &signal);
      if (served) return;  // woken below
      cli::progress("inpaint-serve: stopping (Ctrl-C again to quit at once)");
      server.stop();
      sigwait(&signals, &signal);
      if (served) return;
      std::_Exit(130);  // a second Ctrl-C: nothing is left that must be saved
    });
    server.serve();
    served = true;
    pthread_kill(stopper.native_handle(), SIGTERM);  // wakes the stopper's wait
    stopper.join();
    // The model cannot be interrupted inside a pass: give one under way 2 s, then leave it.
    std::thread watchdog([] {
      std::this_thread::sleep_for(std::chrono::seconds(2));
      cli::progress("inpaint-serve: stopped (a pass under way was abandoned)");
      std::_Exit(0);
    });
    watchdog.detach();
    owned.reset();
    cli::progress("inpaint-serve: stopped");
  });
}
