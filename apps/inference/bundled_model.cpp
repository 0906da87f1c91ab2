#include "apps/inference/bundled_model.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "apps/cli/cli.h"
#include "core/tensor.h"  // Error

#ifndef PCONV_SOURCE_DIR
#define PCONV_SOURCE_DIR ""
#endif

namespace pconv::bundled {

namespace fs = std::filesystem;

namespace {
fs::path executable_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : exe.parent_path();
}
}  // namespace

std::string find_model() {
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("PCONV_MODEL"); env && *env) candidates.emplace_back(env);
  if (const fs::path dir = executable_dir(); !dir.empty()) {
    candidates.push_back(dir / ".." / "data" / "model" / kFileName);
    candidates.push_back(dir / ".." / "share" / "pconv" / kFileName);
  }
  if (*PCONV_SOURCE_DIR) candidates.push_back(fs::path(PCONV_SOURCE_DIR) / "data" / "model" / kFileName);
  for (const fs::path& p : candidates) {
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return fs::weakly_canonical(p, ec).string();
  }
  return "";
}

std::string resolve_model(const std::string& given, const std::string& tool) {
  if (!given.empty()) return given;
  const std::string found = find_model();
  if (found.empty())
    throw Error(std::string("no --model given and no bundled model found (") + kFileName +
                " in data/model/ next to the binary or in the source tree, or $PCONV_MODEL)");
  cli::progress(tool + ": no --model given, using the bundled model " + found);
  return found;
}

}  // namespace pconv::bundled
