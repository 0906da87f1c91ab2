#pragma once
// WebP through Debian's libwebp (libwebp-dev: libwebp, libwebpdemux, libwebpmux), what phones
// and browsers produce. Optional at build time like libzip: a build without it refuses WebP
// files with a message naming the package (webp_available() says which).
#include <string>

#include "core/io/image.h"
#include "core/io/image_meta.h"

namespace pconv {

bool webp_available();
bool is_webp(const std::string& bytes);  // "RIFF....WEBP"

struct WebpInfo {
  int width = 0, height = 0;
  bool alpha = false, animated = false, lossless = false;
};
// The header; throws Error("<name>: ...") for a corrupt file or a build without libwebp.
WebpInfo webp_info(const std::string& bytes, const std::string& name);
// The pixels (call after webp_info, which the pixel limit is checked on); RGB, plus alpha
// when the file has it and `keep_alpha`. An animation is refused (its frames are partial).
ImageU8 webp_decode(const std::string& bytes, const std::string& name, bool keep_alpha);
// The ICCP and EXIF chunks (orientation read, then reset to 1 in the copy kept).
ImageMetadata webp_metadata(const std::string& bytes);
// Lossless (known pixels stay exact) or lossy at `quality` (1..100), with `meta`'s chunks.
std::string webp_encode(const ImageU8& img, bool lossless, int quality, const ImageMetadata& meta);

}  // namespace pconv
