#include "tests/test_util.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace pconv::testing {

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

}  // namespace pconv::testing
