#include "tests/test_util.h"

#include <filesystem>

namespace pconv::testing {

int& gpu_tests_skipped_counter() {
  static int n = 0;
  return n;
}

bool skip_without_gpu() {
  if (cuda_available()) return false;
  ++gpu_tests_skipped_counter();
  return true;
}

std::string source_path(const std::string& relative) {
  return std::string(PCONV_SOURCE_DIR) + "/" + relative;
}

std::string scratch_dir(const std::string& name) {
  namespace fs = std::filesystem;
  fs::path p = fs::path(PCONV_BINARY_DIR) / "test-scratch" / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

}  // namespace pconv::testing
