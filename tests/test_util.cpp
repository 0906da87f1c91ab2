#include "tests/test_util.h"

#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

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

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

ImageU8 random_image(int w, int h, uint64_t seed) {
  ImageU8 img;
  img.width = w;
  img.height = h;
  img.channels_in_file = 3;
  img.rgb.resize(size_t(w) * size_t(h) * 3);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 7;  // xorshift64
  for (auto& b : img.rgb) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    b = uint8_t(x >> 32);
  }
  return img;
}

std::string quote(const std::string& s) { return "'" + s + "'"; }

AppRun run_app(const std::string& app, const std::string& args, const std::string& dir) {
  const std::string binary = std::string(PCONV_BINARY_DIR) + "/" + app;
  REQUIRE_MESSAGE(std::filesystem::exists(binary), binary << " is not built");
  const std::string out = dir + "/app.stdout", err = dir + "/app.stderr";
  const int rc = std::system((quote(binary) + " " + args + " >" + quote(out) + " 2>" + quote(err)).c_str());
  AppRun r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = read_bytes(out);
  r.err = read_bytes(err);
  return r;
}

void check_one_line_error(const AppRun& r, const std::string& needle) {
  CAPTURE(r.err);
  CHECK(r.status == 2);
  REQUIRE(!r.err.empty());
  CHECK(r.err.back() == '\n');
  const size_t start = r.err.rfind('\n', r.err.size() - 2);
  const std::string last = r.err.substr(start == std::string::npos ? 0 : start + 1);
  CHECK(last.find(": error: ") != std::string::npos);
  CHECK(last.find(needle) != std::string::npos);
  size_t errors = 0;
  for (size_t p = r.err.find("error"); p != std::string::npos; p = r.err.find("error", p + 1)) ++errors;
  CHECK(errors == 1);
}

}  // namespace pconv::testing
