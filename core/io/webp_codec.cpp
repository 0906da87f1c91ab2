#include "core/io/webp_codec.h"

#ifdef PCONV_HAVE_WEBP
#include <webp/decode.h>
#include <webp/demux.h>
#include <webp/encode.h>
#include <webp/mux.h>
#endif

namespace pconv {

bool is_webp(const std::string& bytes) {
  return bytes.size() >= 12 && bytes.compare(0, 4, "RIFF") == 0 && bytes.compare(8, 4, "WEBP") == 0;
}

#ifndef PCONV_HAVE_WEBP

bool webp_available() { return false; }

namespace {
[[noreturn]] void no_webp(const std::string& name) {
  throw Error(name + ": a WebP image, and this build has no WebP support (install the Debian package "
                     "libwebp-dev and rebuild)");
}
}  // namespace

WebpInfo webp_info(const std::string&, const std::string& name) { no_webp(name); }
ImageU8 webp_decode(const std::string&, const std::string& name, bool) { no_webp(name); }
ImageMetadata webp_metadata(const std::string&) { return {}; }
std::string webp_encode(const ImageU8&, bool, int, const ImageMetadata&) { no_webp("webp_encode"); }

#else

bool webp_available() { return true; }

WebpInfo webp_info(const std::string& bytes, const std::string& name) {
  WebPBitstreamFeatures f{};
  if (WebPGetFeatures(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), &f) != VP8_STATUS_OK)
    throw Error(name + ": not a readable image (corrupt or truncated WebP)");
  WebpInfo info;
  info.width = f.width;
  info.height = f.height;
  info.alpha = f.has_alpha != 0;
  info.animated = f.has_animation != 0;
  info.lossless = f.format == 2;
  return info;
}

ImageU8 webp_decode(const std::string& bytes, const std::string& name, bool keep_alpha) {
  const WebpInfo info = webp_info(bytes, name);
  if (info.animated) throw Error(name + ": an animated WebP (only still images are read)");
  const bool alpha = keep_alpha && info.alpha;
  const int channels = alpha ? 4 : 3;
  const size_t n = size_t(info.width) * size_t(info.height);
  std::vector<uint8_t> pixels(n * size_t(channels));
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  const int stride = info.width * channels;
  // Without alpha libwebp composes nothing: a transparent pixel keeps its stored colour, as
  // stb does for PNG when alpha is dropped.
  const uint8_t* ok = alpha ? WebPDecodeRGBAInto(data, bytes.size(), pixels.data(), pixels.size(), stride)
                            : WebPDecodeRGBInto(data, bytes.size(), pixels.data(), pixels.size(), stride);
  if (!ok) throw Error(name + ": not a readable image (corrupt or truncated WebP)");
  ImageU8 img;
  img.width = info.width;
  img.height = info.height;
  img.channels_in_file = info.alpha ? 4 : 3;
  if (!alpha) {
    img.rgb = std::move(pixels);
    return img;
  }
  img.rgb.resize(n * 3);
  img.alpha.resize(n);
  for (size_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < 3; ++k) img.rgb[i * 3 + k] = pixels[i * 4 + k];
    img.alpha[i] = pixels[i * 4 + 3];
  }
  return img;
}

ImageMetadata webp_metadata(const std::string& bytes) {
  ImageMetadata meta;
  WebPData data{reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
  WebPDemuxer* demux = WebPDemux(&data);
  if (!demux) return meta;
  WebPChunkIterator it{};
  if (WebPDemuxGetChunk(demux, "ICCP", 1, &it)) {
    meta.icc.assign(reinterpret_cast<const char*>(it.chunk.bytes), it.chunk.size);
    WebPDemuxReleaseChunkIterator(&it);
  }
  if (WebPDemuxGetChunk(demux, "EXIF", 1, &it)) {
    meta.exif.assign(reinterpret_cast<const char*>(it.chunk.bytes), it.chunk.size);
    if (meta.exif.compare(0, 6, "Exif\0\0", 6) == 0) meta.exif.erase(0, 6);
    WebPDemuxReleaseChunkIterator(&it);
  }
  WebPDemuxDelete(demux);
  meta.orientation = exif_orientation(meta.exif);
  meta.exif = exif_reset_orientation(meta.exif);
  return meta;
}

std::string webp_encode(const ImageU8& img, bool lossless, int quality, const ImageMetadata& meta) {
  const bool alpha = !img.alpha.empty();
  const size_t n = size_t(img.width) * size_t(img.height);
  std::vector<uint8_t> rgba;
  if (alpha) {
    rgba.resize(n * 4);
    for (size_t i = 0; i < n; ++i) {
      for (size_t k = 0; k < 3; ++k) rgba[i * 4 + k] = img.rgb[i * 3 + k];
      rgba[i * 4 + 3] = img.alpha[i];
    }
  }
  uint8_t* out = nullptr;
  size_t size = 0;
  if (alpha)
    size = lossless ? WebPEncodeLosslessRGBA(rgba.data(), img.width, img.height, img.width * 4, &out)
                    : WebPEncodeRGBA(rgba.data(), img.width, img.height, img.width * 4, float(quality), &out);
  else
    size = lossless ? WebPEncodeLosslessRGB(img.rgb.data(), img.width, img.height, img.width * 3, &out)
                    : WebPEncodeRGB(img.rgb.data(), img.width, img.height, img.width * 3, float(quality), &out);
  if (size == 0) {
    WebPFree(out);
    throw Error("webp_encode: libwebp could not encode a " + std::to_string(img.width) + "×" +
                std::to_string(img.height) + " image (WebP's sides are at most 16383)");
  }
  std::string bytes(reinterpret_cast<const char*>(out), size);
  WebPFree(out);
  if (meta.icc.empty() && meta.exif.empty()) return bytes;
  WebPData image{reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
  WebPMux* mux = WebPMuxCreate(&image, 1);
  if (!mux) return bytes;
  WebPData icc{reinterpret_cast<const uint8_t*>(meta.icc.data()), meta.icc.size()};
  WebPData exif{reinterpret_cast<const uint8_t*>(meta.exif.data()), meta.exif.size()};
  bool good = true;
  if (!meta.icc.empty()) good = good && WebPMuxSetChunk(mux, "ICCP", &icc, 1) == WEBP_MUX_OK;
  if (!meta.exif.empty()) good = good && WebPMuxSetChunk(mux, "EXIF", &exif, 1) == WEBP_MUX_OK;
  WebPData assembled{};
  if (good && WebPMuxAssemble(mux, &assembled) == WEBP_MUX_OK)
    bytes.assign(reinterpret_cast<const char*>(assembled.bytes), assembled.size);
  WebPDataClear(&assembled);
  WebPMuxDelete(mux);
  return bytes;  // without the metadata when libwebp refused them
}

#endif

}  // namespace pconv
