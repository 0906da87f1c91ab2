#include "apps/common/bundled_model.h"

#include <algorithm>
#include <filesystem>
#include <vector>

#include "core/dtype.h"

namespace pconv {

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> bundled_folders() {
  std::vector<fs::path> folders{fs::path(PCONV_SOURCE_DIR) / "models" / "bundled"};
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) folders.push_back(exe.parent_path().parent_path() / "models" / "bundled");
  return folders;
}

}  // namespace

std::string bundled_model_path() {
  for (const fs::path& folder : bundled_folders()) {
    std::error_code ec;
    if (!fs::is_directory(folder, ec)) continue;
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(folder, ec))
      if (entry.is_regular_file(ec) && entry.path().extension() == ".safetensors") files.push_back(entry.path());
    if (!files.empty()) return std::min_element(files.begin(), files.end())->string();
  }
  return "";
}

std::string model_or_bundled(const std::string& model_option) {
  if (!model_option.empty()) return model_option;
  const std::string bundled = bundled_model_path();
  if (bundled.empty())
    throw Error("no --model given and no bundled model in " + bundled_folders()[0].string() +
                " (train one with inpaint-train and pass its checkpoint)");
  return bundled;
}

}  // namespace pconv
