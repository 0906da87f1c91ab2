// inpaint-serve's work (run_server.h): loading the model, the server's settings, and serving
// until a signal says stop.
#include "apps/serving/run_server.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "apps/cli/cli.h"
#include "apps/inference/bundled_model.h"

namespace pconv::serve {

namespace {

// The models POST /api/v1/model may switch to, by file stem: the one loaded, the bundled one,
// and every .safetensors in --model-dir (the first of a stem wins).
std::vector<ModelChoice> model_choices(const std::string& current, const std::string& model_dir) {
  std::vector<ModelChoice> choices;
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

void run_server(RunServerOptions options) {
  std::string& model = options.model;
  const std::string &host = options.host, &device_name = options.device_name;
  ServerSettings& settings = options.settings;
  const AccessSettings& access = options.access;
  IopaintSettings& iopaint = options.iopaint;

  // Signals go to one thread that stops the server; every other thread blocks them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  settings.limits.max_body_bytes = int64_t(options.max_body_mb * 1024 * 1024);
  settings.limits.max_pixels = int64_t(options.max_megapixels * 1e6);
  settings.hd.strategy = inference::parse_hd_strategy(options.hd_strategy);
  const Device device = cli::parse_device(device_name);
  model = bundled::resolve_model(model, "inpaint-serve");
  std::shared_ptr<PConvUNet> net = inference::load_model(model, device);
  const int64_t available = inference::available_memory_bytes();
  settings.memory_budget_bytes = options.memory_budget_mb > 0 ? int64_t(options.memory_budget_mb * 1024 * 1024)
                                 : available > 0              ? std::max(available / 2, int64_t(1) << 30)
                                                              : int64_t(4) << 30;
  iopaint.models = model_choices(model, options.model_dir);
  const std::string texture = options.texture;
  iopaint.load = [device, device_name, texture](const ModelChoice& choice) {
    std::shared_ptr<PConvUNet> loaded = inference::load_model(choice.path, device);
    return LoadedModel{model_inpainter(loaded, texture), model_json(choice.name, loaded->config(), device_name, texture)};
  };
  const std::string name = std::filesystem::path(model).stem().string();
  auto owned = std::make_unique<InpaintServer>(model_inpainter(net, texture),
                                               model_json(name, net->config(), device_name, texture), settings, access,
                                               options.connections, iopaint);
  InpaintServer& server = *owned;
  const int bound = server.bind(host, options.port);
  const std::string shown_host = host == "0.0.0.0" ? "localhost" : host;
  cli::progress("inpaint-serve: " + net->config().describe() + " from " + model + " on " + device_name);
  cli::progress("inpaint-serve: open http://" + shown_host + ":" + std::to_string(bound) + "/" +
                (access.api_key.empty() || !iopaint.web_app.empty() ? "" : "#key=<your --api-key>") +
                (iopaint.web_app.empty() ? "" : " (the web app in " + iopaint.web_app + ")") +
                " (API: POST /api/v1/inpaint); Ctrl-C stops");
  if (!is_loopback_host(host) && access.api_key.empty())
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
}

}  // namespace pconv::serve
