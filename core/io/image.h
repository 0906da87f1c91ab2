#pragma once
// Image files via stb: PNG, JPEG, BMP, TGA and GIF (its first frame) in (stb is compiled for
// these only), WebP through libwebp (core/io/webp_codec.h); PNG, JPEG and WebP out. The EXIF
// orientation is applied when a file is read (a phone's photo comes out as it is shown), and the
// ICC profile and EXIF block can be carried into an encoded answer (core/io/image_meta.h). In memory an image is a 3×H×W f32 tensor in [0,1] (RGB; grey is replicated, alpha
// dropped unless asked for) or 8-bit RGB.
//
// Hostile files: the dimensions come from the header (read from the stream) before any pixel
// is decoded and before the file is read whole; an image over `max_pixels`, or a file larger
// than 16 bytes per pixel of its dimensions + 16 MiB, is refused. Every allocation stb makes
// while decoding is capped at 8 bytes per pixel of the header's size (+1 MiB), and zeroed, so
// a compressed bomb (a PNG whose data inflates past its size, a chunk length of 2 GB) fails as
// a corrupt file instead of allocating gigabytes, and no decoder path shows stale memory.
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace pconv {

// Larger images are refused with a clear message (decoding them would take gigabytes), and
// so are images with a side over 65536 pixels.
constexpr int64_t kMaxImagePixels = int64_t(8192) * 8192;

struct ImageU8 {
  int width = 0, height = 0;
  int channels_in_file = 0;     // 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA: lets apps say what they did
  std::vector<uint8_t> rgb;     // height × width × 3, row-major, interleaved
  std::vector<uint8_t> alpha;   // height × width; only with ImageAlpha::Keep and a file that has alpha
};

enum class ImageAlpha { Drop, Keep };

enum class ImageFormat { Png, Jpeg, Webp, Gif, Bmp, Tga };
const char* image_format_name(ImageFormat format);  // "png", "jpeg", "webp", ...
// What the bytes are, by their signature (TGA has none: anything else reads as TGA).
ImageFormat sniff_image_format(const std::string& bytes);

// Throws Error("<path>: <reason>") for a missing, unreadable, corrupt or truncated file, or
// one over `max_pixels`.
ImageU8 read_image_u8(const std::string& path, int64_t max_pixels = kMaxImagePixels,
                      ImageAlpha alpha = ImageAlpha::Drop);
// The same from bytes in memory (an upload, a fuzzer's input); `name` starts the messages.
ImageU8 decode_image_u8(const std::string& bytes, const std::string& name,
                        int64_t max_pixels = kMaxImagePixels, ImageAlpha alpha = ImageAlpha::Drop);

// A decoded file with what an answer in the same format should carry.
struct DecodedImage {
  ImageU8 image;  // orientation applied
  ImageFormat format = ImageFormat::Png;
  bool lossless = true;     // PNG, GIF, BMP, TGA and lossless WebP
  std::string icc, exif;    // the ICC profile; the EXIF block with its orientation reset to 1
  int orientation = 1;      // as the file said (already applied to `image`)
};
DecodedImage decode_image(const std::string& bytes, const std::string& name, int64_t max_pixels = kMaxImagePixels,
                          ImageAlpha alpha = ImageAlpha::Drop);
// The dimensions as the header gives them (before orientation) and the format, without
// decoding (for budgeting memory); throws like decode_image for what is not an image or too large.
struct ImageHeader {
  int width = 0, height = 0;
  ImageFormat format = ImageFormat::Png;
};
ImageHeader read_image_header(const std::string& bytes, const std::string& name, int64_t max_pixels = kMaxImagePixels);

// 3×H×W f32 in [0,1].
Tensor image_to_tensor(const ImageU8& img);
Tensor load_image(const std::string& path, int64_t max_pixels = kMaxImagePixels);

// From a 3×H×W (or 1×H×W, replicated) tensor, values clamped to [0,1], rounded to 8 bits.
ImageU8 tensor_to_image(const Tensor& chw);
// PNG or JPEG by the extension (.png, .jpg, .jpeg), written atomically. Throws on an unknown
// extension or a failed write, naming the path. PNGs keep the alpha channel; JPEG has none.
void save_image(const std::string& path, const ImageU8& img, int jpeg_quality = 95);
void save_image(const std::string& path, const Tensor& chw, int jpeg_quality = 95);

// Encodes to PNG bytes in memory (for atomic writes, the server and tests): RGBA when the
// image has alpha, else RGB; zlib's fastest level.
std::string encode_png(const ImageU8& img);
// Encodes as `format` (PNG, JPEG at `quality`, WebP lossless when `lossless` else at `quality`)
// with the ICC profile and EXIF block given (either may be empty). JPEG drops alpha.
std::string encode_image(const ImageU8& img, ImageFormat format, int quality = 100, bool lossless = true,
                         const std::string& icc = "", const std::string& exif = "");

}  // namespace pconv
