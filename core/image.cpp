// Image I/O through stb. The stb implementations are compiled here and only here (GPU
// machines have the headers from the source tree's include path but no libstb to link).
#include <zlib.h>

#include <cstdlib>
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
namespace pconv {
namespace {
unsigned char* zlib_compress(unsigned char* data, int length, int* out_length, int quality);
}
}  // namespace pconv
#define STBIW_ZLIB_COMPRESS pconv::zlib_compress
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif
#include <stb_image.h>
#include <stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include "core/image.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sys/stat.h>

#include "core/safetensors.h"

namespace pconv {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& reason) {
  throw Error(path + ": " + reason);
}

std::string read_file_bytes(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) fail(path, "no such file");
    fail(path, std::string("cannot open (") + std::strerror(errno) + ")");
  }
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  if (st.st_size > INT_MAX) fail(path, "file of " + std::to_string(st.st_size) + " bytes is too large for an image");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, std::string("cannot open (") + std::strerror(errno) + ")");
  std::string bytes(size_t(st.st_size), '\0');
  in.read(bytes.data(), std::streamsize(bytes.size()));
  if (in.gcount() != std::streamsize(bytes.size())) fail(path, "cannot read the whole file");
  return bytes;
}

void append_bytes(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data), size_t(size));
}

void check_image(const char* op, const ImageU8& img) {
  const size_t n = size_t(std::max(img.width, 0)) * size_t(std::max(img.height, 0));
  if (img.width <= 0 || img.height <= 0 || img.rgb.size() != n * 3 || (!img.alpha.empty() && img.alpha.size() != n))
    throw Error(std::string(op) + ": image is " + std::to_string(img.width) + "×" +
                std::to_string(img.height) + " with " + std::to_string(img.rgb.size()) + " RGB and " +
                std::to_string(img.alpha.size()) +
                " alpha bytes, expected a non-empty RGB image of width·height·3 bytes (alpha: none or width·height)");
}

// A 20-megapixel PNG is an everyday answer of the server. zlib at its fastest level encodes a
// noisy 20-megapixel photo in a third of the time of stb's own deflate (1.6 vs 5.5 s of CPU
// on the CI machine) and a third smaller (25 vs 37 MB). stb's requested level is ignored.
unsigned char* zlib_compress(unsigned char* data, int length, int* out_length, int) {
  uLongf bound = compressBound(uLong(length));
  auto* out = static_cast<unsigned char*>(STBIW_MALLOC(bound));
  if (!out) return nullptr;
  if (compress2(out, &bound, data, uLong(length), Z_BEST_SPEED) != Z_OK) {
    STBIW_FREE(out);
    return nullptr;
  }
  *out_length = int(bound);
  return out;
}

std::string lower_extension(const std::string& path) {
  const auto slash = path.find_last_of('/');
  const auto dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = path.substr(dot);
  for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

}  // namespace

ImageU8 decode_image_u8(const std::string& bytes, const std::string& name, int64_t max_pixels) {
  if (bytes.size() > size_t(INT_MAX))
    fail(name, std::to_string(bytes.size()) + " bytes is too large for an image");
  const auto* buffer = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int length = int(bytes.size());
  // Header only first, so an oversized image is refused before gigabytes are allocated.
  int width = 0, height = 0, channels = 0;
  if (!stbi_info_from_memory(buffer, length, &width, &height, &channels))
    fail(name, std::string("not a readable image (stb: ") + stbi_failure_reason() + ")");
  const int64_t pixels = int64_t(width) * int64_t(height);
  if (pixels > max_pixels)
    fail(name, "image is " + std::to_string(width) + "×" + std::to_string(height) + " (" +
                   std::to_string(pixels) + " pixels), over the limit of " +
                   std::to_string(max_pixels) + " pixels");

  // Asking for 3 channels makes stb replicate grey and drop alpha (no compositing); with
  // alpha, 4 channels (grey replicated) split into RGB and alpha.
  const bool has_alpha = channels == 2 || channels == 4;
  int w = 0, h = 0, c = 0;
  stbi_uc* decoded = stbi_load_from_memory(buffer, length, &w, &h, &c, has_alpha ? 4 : 3);
  if (!decoded) fail(name, std::string("not a readable image (stb: ") + stbi_failure_reason() + ")");
  ImageU8 img;
  img.width = w;
  img.height = h;
  img.channels_in_file = c;
  const size_t n = size_t(w) * size_t(h);
  if (has_alpha) {
    img.rgb.resize(n * 3);
    img.alpha.resize(n);
    for (size_t i = 0; i < n; ++i) {
      for (size_t k = 0; k < 3; ++k) img.rgb[i * 3 + k] = decoded[i * 4 + k];
      img.alpha[i] = decoded[i * 4 + 3];
    }
  } else {
    img.rgb.assign(decoded, decoded + n * 3);
  }
  stbi_image_free(decoded);
  return img;
}

ImageU8 read_image_u8(const std::string& path, int64_t max_pixels) {
  return decode_image_u8(read_file_bytes(path), path, max_pixels);
}

Tensor image_to_tensor(const ImageU8& img) {
  check_image("image_to_tensor", img);
  const int64_t hw = int64_t(img.width) * img.height;
  Tensor t = Tensor::empty({3, img.height, img.width}, DType::F32, Device::CPU);
  float* out = t.data<float>();
  const uint8_t* in = img.rgb.data();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < hw; ++i) out[c * hw + i] = float(in[i * 3 + c]) / 255.0f;
  return t;
}

Tensor load_image(const std::string& path, int64_t max_pixels) {
  return image_to_tensor(read_image_u8(path, max_pixels));
}

ImageU8 tensor_to_image(const Tensor& chw) {
  check_defined("tensor_to_image", "image", chw);
  if (chw.dim() != 3 || (chw.size(0) != 3 && chw.size(0) != 1) || chw.size(1) == 0 || chw.size(2) == 0)
    throw Error("tensor_to_image: expected a 3×H×W or 1×H×W tensor, got shape " + shape_str(chw.shape()));
  const std::vector<float> v = chw.to_float_vector();
  const int64_t channels = chw.size(0), h = chw.size(1), w = chw.size(2), hw = h * w;
  if (h > INT_MAX || w > INT_MAX)
    throw Error("tensor_to_image: shape " + shape_str(chw.shape()) + " is too large for an image");
  ImageU8 img;
  img.width = int(w);
  img.height = int(h);
  img.channels_in_file = 3;
  img.rgb.resize(size_t(hw) * 3);
  for (int64_t i = 0; i < hw; ++i)
    for (int64_t c = 0; c < 3; ++c) {
      float x = v[size_t((channels == 3 ? c : 0) * hw + i)];
      x = std::isnan(x) ? 0.0f : std::clamp(x, 0.0f, 1.0f);
      img.rgb[size_t(i * 3 + c)] = uint8_t(std::lround(x * 255.0f));
    }
  return img;
}

std::string encode_png(const ImageU8& img) {
  check_image("encode_png", img);
  std::string out;
  std::vector<uint8_t> rgba;
  if (!img.alpha.empty()) {
    const size_t n = img.alpha.size();
    rgba.resize(n * 4);
    for (size_t i = 0; i < n; ++i) {
      for (size_t k = 0; k < 3; ++k) rgba[i * 4 + k] = img.rgb[i * 3 + k];
      rgba[i * 4 + 3] = img.alpha[i];
    }
  }
  const int channels = rgba.empty() ? 3 : 4;
  if (!stbi_write_png_to_func(append_bytes, &out, img.width, img.height, channels,
                              rgba.empty() ? img.rgb.data() : rgba.data(), img.width * channels))
    throw Error("encode_png: stb could not encode a " + std::to_string(img.width) + "×" +
                std::to_string(img.height) + " image");
  return out;
}

void save_image(const std::string& path, const ImageU8& img, int jpeg_quality) {
  const std::string ext = lower_extension(path);
  std::string bytes;
  if (ext == ".png") {
    bytes = encode_png(img);
  } else if (ext == ".jpg" || ext == ".jpeg") {
    check_image("save_image", img);
    if (jpeg_quality < 1 || jpeg_quality > 100)
      fail(path, "JPEG quality " + std::to_string(jpeg_quality) + " is outside 1..100");
    if (!stbi_write_jpg_to_func(append_bytes, &bytes, img.width, img.height, 3, img.rgb.data(),
                                jpeg_quality))
      fail(path, "stb could not encode the JPEG");
  } else {
    fail(path, "unknown image extension '" + ext + "' (use .png, .jpg or .jpeg)");
  }
  write_file_atomic(path, bytes);
}

void save_image(const std::string& path, const Tensor& chw, int jpeg_quality) {
  save_image(path, tensor_to_image(chw), jpeg_quality);
}

}  // namespace pconv
