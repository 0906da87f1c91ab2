#include "apps/common/cli.h"

#include <filesystem>
#include <iostream>

#include "core/backend.h"
#include "core/dtype.h"

namespace pconv::cli {

int run(CLI::App& app, int argc, char** argv, const std::function<void()>& body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 prints the message (or the help); its own codes (105, 106, ...) mean nothing to
    // scripts, so every usage error is status 1 as documented.
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << app.get_name() << ": error: " << e.what() << std::endl;
    return kExitFailure;
  }
}

void fail(const std::string& message) { throw Error(message); }

void progress(const std::string& line) { std::cerr << line << std::endl; }

void check_can_write(const std::string& path, bool force) {
  std::error_code ec;
  if (!force && std::filesystem::exists(path, ec)) fail(path + " exists (use --force to overwrite)");
}

void ensure_folder(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) fail(dir + ": exists and is not a folder");
    return;
  }
  if (!fs::create_directories(dir, ec) && ec) fail(dir + ": cannot create the folder (" + ec.message() + ")");
}

CLI::Validator mask_holes_validator() { return CLI::IsMember({"white", "black"}); }

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::CPU;
  if (name != "cuda") fail("--device '" + name + "' is neither 'cpu' nor 'cuda'");
  if (!cuda_available()) fail("--device cuda: " + cuda_unavailable_reason());
  return Device::CUDA;
}

CLI::Validator device_validator() { return CLI::IsMember({"cpu", "cuda"}); }

}  // namespace pconv::cli
