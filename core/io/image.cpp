// Image I/O through stb. The stb implementations are compiled here and only here (GPU
// machines have the headers from the source tree's include path but no libstb to link).
// stb_image.h is the copy in third_party/stb/ (Debian's, with the fixes fuzzing called for,
// listed at its top); stb_image_write.h comes from STB_INCLUDE_DIR.
// Only the formats docs/inference.md documents are compiled in: less code that a hostile file can reach.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_TGA
#define STBI_ONLY_GIF  // the first frame: what browsers and phones send as a still
// stb's own bound on each side (default 2^24): 65536 keeps the padding stb adds to whole JPEG
// blocks (16 rows) small next to the pixels, so the cap on its allocations below stays tight.
#define STBI_MAX_DIMENSIONS (1 << 16)
// Every allocation stb makes goes through a per-thread cap (see decode() below).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
namespace pconv::stb_cap {
thread_local size_t limit = SIZE_MAX;  // bytes one stb allocation may take on this thread
thread_local bool refused = false;     // an allocation was over the limit
inline bool allowed(size_t n) {
  if (n <= limit) return true;
  refused = true;
  return false;
}
// Zeroed: a decoder path that reads less than it allocated then shows zeros, never what the
// heap held before (stb 2.27's truncated TGA rows did).
inline void* malloc_capped(size_t n) { return allowed(n) ? std::calloc(1, n) : nullptr; }
inline void* realloc_capped(void* p, size_t n) { return allowed(n) ? std::realloc(p, n) : nullptr; }
}  // namespace pconv::stb_cap
#define STBI_MALLOC(n) pconv::stb_cap::malloc_capped(n)
#define STBI_REALLOC(p, n) pconv::stb_cap::realloc_capped(p, n)
#define STBI_FREE(p) std::free(p)
#include <zlib.h>
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
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#endif
#include "third_party/stb/stb_image.h"
#include <stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include "core/io/image.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <sys/stat.h>

#include "core/io/image_meta.h"
#include "core/io/safetensors.h"
#include "core/io/webp_codec.h"

namespace pconv {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& reason) {
  throw Error(path + ": " + reason);
}

// A stdio file, closed on every path out.
struct File {
  std::FILE* f = nullptr;
  ~File() {
    if (f) std::fclose(f);
  }
};

// Opens a regular file, with the messages the tools have always given; returns its size.
int64_t open_image_file(const std::string& path, File& file) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) fail(path, "no such file");
    fail(path, std::string("cannot open (") + std::strerror(errno) + ")");
  }
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  file.f = std::fopen(path.c_str(), "rbe");
  if (!file.f) fail(path, std::string("cannot open (") + std::strerror(errno) + ")");
  return int64_t(st.st_size);
}

// Sets the per-thread cap on stb's allocations for one call, and clears it after.
struct StbCap {
  explicit StbCap(size_t bytes) {
    stb_cap::limit = bytes;
    stb_cap::refused = false;
  }
  ~StbCap() { stb_cap::limit = SIZE_MAX; }
};

// Reading the header needs no pixel buffers; JPEG's decoder state is the largest thing.
constexpr size_t kHeaderAllocationCap = size_t(4) << 20;
// A file may hold this much per pixel of its header's size, plus metadata (EXIF, ICC
// profiles, text chunks): 16-bit RGBA PNG stored uncompressed is 8 bytes per pixel.
constexpr int64_t kMaxFileBytesPerPixel = 16;
constexpr int64_t kMaxFileOverheadBytes = int64_t(16) << 20;

void check_dimensions(const std::string& name, int64_t max_pixels, int width, int height);

// The header's dimensions and channels (`info`), checked against the pixel limit.
template <typename Info>
void read_header(const std::string& name, int64_t max_pixels, Info info, int& width, int& height, int& channels) {
  StbCap cap(kHeaderAllocationCap);
  if (!info(&width, &height, &channels))
    fail(name, std::string("not a readable image (stb: ") + stbi_failure_reason() + ")");
  check_dimensions(name, max_pixels, width, height);
}

void check_dimensions(const std::string& name, int64_t max_pixels, int width, int height) {
  // Not every format's header reader checks the size (BMP's returns negative heights): check
  // it here, before any arithmetic on it.
  if (width <= 0 || height <= 0 || width > STBI_MAX_DIMENSIONS || height > STBI_MAX_DIMENSIONS)
    fail(name, "corrupt image: its header says " + std::to_string(width) + "×" + std::to_string(height) +
                   " (each side must be 1 to " + std::to_string(STBI_MAX_DIMENSIONS) + " pixels)");
  const int64_t pixels = int64_t(width) * int64_t(height);
  if (pixels > max_pixels)
    fail(name, "image is " + std::to_string(width) + "×" + std::to_string(height) + " (" +
                   std::to_string(pixels) + " pixels), over the limit of " +
                   std::to_string(max_pixels) + " pixels");
}

// Header first, then the pixels (`load`), with stb's allocations capped by the header's size:
// 8 bytes per pixel covers 16-bit RGBA PNG rows and JPEG's coefficient planes, +16 per side
// JPEG's padding to whole MCUs.
template <typename Info, typename Load>
ImageU8 decode(const std::string& name, int64_t max_pixels, ImageAlpha alpha, Info info, Load load) {
  int width = 0, height = 0, channels = 0;
  read_header(name, max_pixels, info, width, height, channels);
  const bool keep_alpha = alpha == ImageAlpha::Keep && (channels == 2 || channels == 4);
  const int wanted = keep_alpha ? 4 : 3;  // stb replicates grey; 3 drops alpha (no compositing)
  int w = 0, h = 0, c = 0;
  stbi_uc* data = nullptr;
  bool refused = false;
  {
    StbCap cap(size_t(8) * size_t(width + 16) * size_t(height + 16) + (size_t(1) << 20));
    data = load(&w, &h, &c, wanted);
    refused = stb_cap::refused;
  }
  if (!data) {
    if (refused)
      fail(name, "corrupt image: decoding its data would need more memory than a " + std::to_string(width) +
                     "×" + std::to_string(height) + " image");
    fail(name, std::string("not a readable image (stb: ") + stbi_failure_reason() + ")");
  }
  if (w != width || h != height) {
    stbi_image_free(data);
    fail(name, "corrupt image: its header says " + std::to_string(width) + "×" + std::to_string(height) +
                   ", its data " + std::to_string(w) + "×" + std::to_string(h));
  }
  ImageU8 img;
  img.width = w;
  img.height = h;
  img.channels_in_file = c;
  const size_t n = size_t(w) * size_t(h);
  if (wanted == 3) {
    img.rgb.assign(data, data + n * 3);
  } else {
    img.rgb.resize(n * 3);
    img.alpha.resize(n);
    for (size_t i = 0; i < n; ++i) {
      for (size_t k = 0; k < 3; ++k) img.rgb[i * 3 + k] = data[i * 4 + k];
      img.alpha[i] = data[i * 4 + 3];
    }
  }
  stbi_image_free(data);
  return img;
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

ImageU8 read_image_u8(const std::string& path, int64_t max_pixels, ImageAlpha alpha) {
  // The header is read from the stream first; only a file whose size fits its dimensions is
  // then read whole and decoded from memory, the one decoding path (stb's stream and memory
  // readers disagree on files that end early).
  File file;
  const int64_t file_bytes = open_image_file(path, file);
  char magic[12] = {};
  const size_t got = std::fread(magic, 1, sizeof magic, file.f);
  if (is_webp(std::string(magic, got))) {
    // libwebp reads headers from memory only: bound the file by the largest image allowed.
    const int64_t most = kMaxFileBytesPerPixel * max_pixels + kMaxFileOverheadBytes;
    if (file_bytes > most)
      fail(path, "file of " + std::to_string(file_bytes) + " bytes is larger than an image of at most " +
                     std::to_string(max_pixels) + " pixels needs (at most " + std::to_string(most) + ")");
    std::string bytes(size_t(file_bytes), '\0');
    if (std::fseek(file.f, 0, SEEK_SET) != 0 || std::fread(bytes.data(), 1, bytes.size(), file.f) != bytes.size())
      fail(path, "cannot read the whole file");
    return decode_image_u8(bytes, path, max_pixels, alpha);
  }
  if (std::fseek(file.f, 0, SEEK_SET) != 0) fail(path, "cannot read the file");
  int width = 0, height = 0, channels = 0;
  read_header(
      path, max_pixels, [&](int* w, int* h, int* c) { return stbi_info_from_file(file.f, w, h, c); }, width, height,
      channels);
  const int64_t most = kMaxFileBytesPerPixel * int64_t(width) * int64_t(height) + kMaxFileOverheadBytes;
  if (file_bytes > most)
    fail(path, "file of " + std::to_string(file_bytes) + " bytes is larger than a " + std::to_string(width) + "×" +
                   std::to_string(height) + " image needs (at most " + std::to_string(most) + ")");
  std::string bytes(size_t(file_bytes), '\0');
  if (std::fseek(file.f, 0, SEEK_SET) != 0 || std::fread(bytes.data(), 1, bytes.size(), file.f) != bytes.size())
    fail(path, "cannot read the whole file");
  return decode_image_u8(bytes, path, max_pixels, alpha);
}

const char* image_format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::Png: return "png";
    case ImageFormat::Jpeg: return "jpeg";
    case ImageFormat::Webp: return "webp";
    case ImageFormat::Gif: return "gif";
    case ImageFormat::Bmp: return "bmp";
    case ImageFormat::Tga: return "tga";
  }
  return "?";
}

ImageFormat sniff_image_format(const std::string& b) {
  if (b.compare(0, 8, "\x89PNG\r\n\x1a\n", 8) == 0) return ImageFormat::Png;
  if (b.size() >= 3 && b.compare(0, 3, "\xff\xd8\xff", 3) == 0) return ImageFormat::Jpeg;
  if (is_webp(b)) return ImageFormat::Webp;
  if (b.compare(0, 4, "GIF8", 4) == 0) return ImageFormat::Gif;
  if (b.compare(0, 2, "BM", 2) == 0) return ImageFormat::Bmp;
  return ImageFormat::Tga;
}

ImageHeader read_image_header(const std::string& bytes, const std::string& name, int64_t max_pixels) {
  if (bytes.size() > size_t(INT_MAX))
    fail(name, std::to_string(bytes.size()) + " bytes is too large for an image");
  ImageHeader header;
  header.format = sniff_image_format(bytes);
  if (header.format == ImageFormat::Webp) {
    const WebpInfo info = webp_info(bytes, name);
    check_dimensions(name, max_pixels, info.width, info.height);
    header.width = info.width, header.height = info.height;
    return header;
  }
  const auto* buffer = reinterpret_cast<const stbi_uc*>(bytes.data());
  int channels = 0;
  read_header(
      name, max_pixels,
      [&](int* w, int* h, int* c) { return stbi_info_from_memory(buffer, int(bytes.size()), w, h, c); },
      header.width, header.height, channels);
  return header;
}

DecodedImage decode_image(const std::string& bytes, const std::string& name, int64_t max_pixels, ImageAlpha alpha) {
  if (bytes.size() > size_t(INT_MAX))
    fail(name, std::to_string(bytes.size()) + " bytes is too large for an image");
  DecodedImage d;
  d.format = sniff_image_format(bytes);
  ImageMetadata meta;
  if (d.format == ImageFormat::Webp) {
    const WebpInfo info = webp_info(bytes, name);
    check_dimensions(name, max_pixels, info.width, info.height);
    d.image = webp_decode(bytes, name, alpha == ImageAlpha::Keep);
    d.lossless = info.lossless;
    meta = webp_metadata(bytes);
  } else {
    const auto* buffer = reinterpret_cast<const stbi_uc*>(bytes.data());
    const int length = int(bytes.size());
    d.image = decode(
        name, max_pixels, alpha,
        [&](int* w, int* h, int* c) { return stbi_info_from_memory(buffer, length, w, h, c); },
        [&](int* w, int* h, int* c, int wanted) { return stbi_load_from_memory(buffer, length, w, h, c, wanted); });
    d.lossless = d.format != ImageFormat::Jpeg;
    if (d.format == ImageFormat::Jpeg) meta = read_jpeg_metadata(bytes);
    if (d.format == ImageFormat::Png) meta = read_png_metadata(bytes);
  }
  d.icc = std::move(meta.icc);
  d.exif = std::move(meta.exif);
  d.orientation = meta.orientation;
  if (d.orientation != 1) d.image = apply_orientation(d.image, d.orientation);
  return d;
}

ImageU8 decode_image_u8(const std::string& bytes, const std::string& name, int64_t max_pixels, ImageAlpha alpha) {
  return decode_image(bytes, name, max_pixels, alpha).image;
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

std::string encode_image(const ImageU8& img, ImageFormat format, int quality, bool lossless, const std::string& icc,
                         const std::string& exif) {
  check_image("encode_image", img);
  if (quality < 1 || quality > 100)
    throw Error("encode_image: quality " + std::to_string(quality) + " is outside 1..100");
  ImageMetadata meta;
  meta.icc = icc;
  meta.exif = exif;
  switch (format) {
    case ImageFormat::Jpeg: {
      std::string bytes;
      if (!stbi_write_jpg_to_func(append_bytes, &bytes, img.width, img.height, 3, img.rgb.data(), quality))
        throw Error("encode_image: stb could not encode the JPEG");
      return add_jpeg_metadata(bytes, meta);
    }
    case ImageFormat::Webp: return webp_encode(img, lossless, quality, meta);
    case ImageFormat::Png: return add_png_metadata(encode_png(img), meta);
    default:
      throw Error(std::string("encode_image: cannot write ") + image_format_name(format) + " (png, jpeg or webp)");
  }
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
