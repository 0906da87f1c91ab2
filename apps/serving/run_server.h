#pragma once
// inpaint-serve's work: loads the model, sizes the server's memory budget, binds, prints where
// to open the page, and serves until SIGINT or SIGTERM (a second one quits at once; a pass
// under way is given 2 s). The models a client may switch to are the one loaded, the bundled
// one, and every .safetensors in model_dir.
#include <string>

#include "apps/serving/inpaint_server.h"
#include "core/io/image.h"

namespace pconv::serve {

struct RunServerOptions {
  std::string model;  // checkpoint; empty: the bundled model
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port
  std::string device_name = "cpu";
  std::string hd_strategy = "crop";  // for requests that name none
  double max_body_mb = 128;
  double max_megapixels = double(kMaxImagePixels) / 1e6;
  double memory_budget_mb = 0;  // 0: half the memory available at start, at least 1 GiB
  std::string model_dir;        // more models clients may switch to by name
  std::string texture = "none"; // "transfer": models/texture_transfer.h on every answer
  ServerSettings settings;      // limits, hd and memory budget are set from the fields above
  AccessSettings access;
  ConnectionSettings connections;
  IopaintSettings iopaint;  // models and load are set by run_server
};

void run_server(RunServerOptions options);

}  // namespace pconv::serve
