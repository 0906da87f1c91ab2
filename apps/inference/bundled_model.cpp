#include "apps/inference/bundled_model.h"

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "apps/cli/cli.h"
#include "core/tensor.h"  // Error

namespace pconv::bundled {

namespace fs = std::filesystem;

std::string executable_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

std::string find_model_from(const std::string& exe_dir, const std::string& env) {
  std::vector<fs::path> candidates;
  if (!env.empty()) candidates.emplace_back(env);
  if (!exe_dir.empty()) {
    candidates.push_back(fs::path(exe_dir) / ".." / "share" / "pconv" / kFileName);
    candidates.push_back(fs::path(exe_dir) / ".." / "data" / "model" / kFileName);
  }
  for (const fs::path& p : candidates) {
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return fs::weakly_canonical(p, ec).string();
  }
  return "";
}

std::string find_model() {
  const char* env = std::getenv("PCONV_MODEL");
  return find_model_from(executable_dir(), env ? env : "");
}

std::string resolve_model(const std::string& given, const std::string& tool) {
  if (!given.empty()) return given;
  const std::string found = find_model();
  if (found.empty())
    throw Error(std::string("no --model given and no bundled model found (") + kFileName +
                " in ../share/pconv/ or ../data/model/ from the binary's folder " + executable_dir() +
                ", or $PCONV_MODEL)");
  cli::progress(tool + ": no --model given, using the bundled model " + found);
  return found;
}

}  // namespace pconv::bundled
