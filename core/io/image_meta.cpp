#include "core/io/image_meta.h"

#include <zlib.h>

#include <map>

namespace pconv {

namespace {

uint32_t get_u16(const std::string& s, size_t at, bool big_endian) {
  const auto b = [&](size_t i) { return uint32_t(static_cast<unsigned char>(s[at + i])); };
  return big_endian ? (b(0) << 8 | b(1)) : (b(1) << 8 | b(0));
}

uint32_t get_u32(const std::string& s, size_t at, bool big_endian) {
  return big_endian ? (get_u16(s, at, true) << 16 | get_u16(s, at + 2, true))
                    : (get_u16(s, at + 2, false) << 16 | get_u16(s, at, false));
}

std::string be16(size_t v) { return {char((v >> 8) & 0xff), char(v & 0xff)}; }
std::string be32(size_t v) { return be16(v >> 16) + be16(v & 0xffff); }

// Where IFD0's orientation value sits in a TIFF block (its first two bytes), or npos.
size_t orientation_offset(const std::string& tiff, bool& big_endian) {
  if (tiff.size() < 8) return std::string::npos;
  if (tiff.compare(0, 4, "II*\0", 4) == 0)
    big_endian = false;
  else if (tiff.compare(0, 4, "MM\0*", 4) == 0)
    big_endian = true;
  else
    return std::string::npos;
  const size_t ifd = get_u32(tiff, 4, big_endian);
  if (ifd < 8 || ifd > tiff.size() - 2) return std::string::npos;
  const size_t count = get_u16(tiff, ifd, big_endian);
  for (size_t i = 0; i < count; ++i) {
    const size_t entry = ifd + 2 + 12 * i;
    if (entry + 12 > tiff.size()) break;
    // Tag 0x0112, type SHORT (3), one value: stored in the entry's value field.
    if (get_u16(tiff, entry, big_endian) == 0x0112 && get_u16(tiff, entry + 2, big_endian) == 3 &&
        get_u32(tiff, entry + 4, big_endian) == 1)
      return entry + 8;
  }
  return std::string::npos;
}

std::string strip_exif_prefix(const std::string& block) {
  // JPEG's APP1 starts with "Exif\0\0"; some WebP and PNG writers copy that prefix too.
  return block.compare(0, 6, "Exif\0\0", 6) == 0 ? block.substr(6) : block;
}

// A zlib stream inflated, or "" when corrupt or larger than `cap` (a bomb in a profile chunk).
std::string inflate_bounded(const std::string& z, size_t cap) {
  z_stream s{};
  if (inflateInit(&s) != Z_OK) return "";
  std::string out;
  char buf[16384];
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(z.data()));
  s.avail_in = uInt(z.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    s.next_out = reinterpret_cast<Bytef*>(buf);
    s.avail_out = sizeof buf;
    rc = inflate(&s, Z_NO_FLUSH);
    out.append(buf, sizeof buf - s.avail_out);
    if (out.size() > cap) rc = Z_MEM_ERROR;
    if (rc == Z_OK && s.avail_out == sizeof buf) rc = Z_BUF_ERROR;  // no progress: truncated
  }
  inflateEnd(&s);
  return rc == Z_STREAM_END ? out : "";
}

constexpr size_t kMaxProfileBytes = size_t(16) << 20;

std::string png_chunk(const std::string& type, const std::string& data) {
  uLong crc = crc32(0, reinterpret_cast<const Bytef*>(type.data()), uInt(type.size()));
  crc = crc32(crc, reinterpret_cast<const Bytef*>(data.data()), uInt(data.size()));
  return be32(data.size()) + type + data + be32(crc);
}

}  // namespace

int exif_orientation(const std::string& tiff) {
  bool big_endian = false;
  const size_t at = orientation_offset(tiff, big_endian);
  if (at == std::string::npos) return 1;
  const int v = int(get_u16(tiff, at, big_endian));
  return v >= 1 && v <= 8 ? v : 1;
}

std::string exif_reset_orientation(std::string tiff) {
  bool big_endian = false;
  const size_t at = orientation_offset(tiff, big_endian);
  if (at == std::string::npos) return tiff;
  tiff[at] = char(big_endian ? 0 : 1);
  tiff[at + 1] = char(big_endian ? 1 : 0);
  return tiff;
}

ImageU8 apply_orientation(const ImageU8& img, int orientation) {
  if (orientation < 2 || orientation > 8) return img;
  const int64_t w = img.width, h = img.height;
  const bool swap = orientation >= 5;
  ImageU8 out;
  out.width = int(swap ? h : w);
  out.height = int(swap ? w : h);
  out.channels_in_file = img.channels_in_file;
  out.rgb.resize(img.rgb.size());
  out.alpha.resize(img.alpha.size());
  for (int64_t y = 0; y < out.height; ++y)
    for (int64_t x = 0; x < out.width; ++x) {
      // The stored pixel (sx, sy) shown at (x, y).
      int64_t sx = x, sy = y;
      switch (orientation) {
        case 2: sx = w - 1 - x; break;
        case 3: sx = w - 1 - x, sy = h - 1 - y; break;
        case 4: sy = h - 1 - y; break;
        case 5: sx = y, sy = x; break;
        case 6: sx = y, sy = h - 1 - x; break;
        case 7: sx = w - 1 - y, sy = h - 1 - x; break;
        case 8: sx = w - 1 - y, sy = x; break;
      }
      const size_t from = size_t(sy * w + sx), to = size_t(y * out.width + x);
      for (size_t k = 0; k < 3; ++k) out.rgb[to * 3 + k] = img.rgb[from * 3 + k];
      if (!img.alpha.empty()) out.alpha[to] = img.alpha[from];
    }
  return out;
}

ImageMetadata read_jpeg_metadata(const std::string& jpeg) {
  ImageMetadata meta;
  if (jpeg.size() < 4 || static_cast<unsigned char>(jpeg[0]) != 0xff || static_cast<unsigned char>(jpeg[1]) != 0xd8)
    return meta;
  std::map<int, std::string> icc_chunks;
  int icc_count = 0;
  size_t at = 2;
  while (at + 4 <= jpeg.size()) {
    if (static_cast<unsigned char>(jpeg[at]) != 0xff) break;
    const int marker = static_cast<unsigned char>(jpeg[at + 1]);
    if (marker == 0xff) {  // fill byte
      ++at;
      continue;
    }
    if (marker == 0xda || marker == 0xd9) break;  // the scan: metadata come before it
    if ((marker >= 0xd0 && marker <= 0xd7) || marker == 0x01) {
      at += 2;
      continue;
    }
    const size_t length = get_u16(jpeg, at + 2, true);
    if (length < 2 || at + 2 + length > jpeg.size()) break;
    const std::string payload = jpeg.substr(at + 4, length - 2);
    if (marker == 0xe1 && payload.compare(0, 6, "Exif\0\0", 6) == 0 && meta.exif.empty()) {
      meta.exif = payload.substr(6);
    } else if (marker == 0xe2 && payload.size() > 14 && payload.compare(0, 12, "ICC_PROFILE\0", 12) == 0) {
      const int seq = static_cast<unsigned char>(payload[12]), count = static_cast<unsigned char>(payload[13]);
      if (seq >= 1 && seq <= count && (icc_count == 0 || icc_count == count)) {
        icc_count = count;
        icc_chunks[seq] = payload.substr(14);
      }
    }
    at += 2 + length;
  }
  if (icc_count > 0 && int(icc_chunks.size()) == icc_count)
    for (const auto& [seq, chunk] : icc_chunks) meta.icc += chunk;
  meta.orientation = exif_orientation(meta.exif);
  meta.exif = exif_reset_orientation(meta.exif);
  return meta;
}

ImageMetadata read_png_metadata(const std::string& png) {
  ImageMetadata meta;
  if (png.size() < 8 || png.compare(0, 8, "\x89PNG\r\n\x1a\n", 8) != 0) return meta;
  size_t at = 8;
  while (at + 12 <= png.size()) {
    const size_t length = get_u32(png, at, true);
    if (length > png.size() - at - 12) break;
    const std::string type = png.substr(at + 4, 4);
    if (type == "IEND") break;
    if (type == "eXIf" && meta.exif.empty()) {
      meta.exif = strip_exif_prefix(png.substr(at + 8, length));
    } else if (type == "iCCP" && meta.icc.empty()) {
      const std::string data = png.substr(at + 8, length);
      const size_t nul = data.find('\0');
      // name, NUL, compression method 0 (zlib), the compressed profile
      if (nul != std::string::npos && nul + 2 <= data.size() && data[nul + 1] == 0)
        meta.icc = inflate_bounded(data.substr(nul + 2), kMaxProfileBytes);
    }
    at += 12 + length;
  }
  meta.orientation = exif_orientation(meta.exif);
  meta.exif = exif_reset_orientation(meta.exif);
  return meta;
}

std::string add_jpeg_metadata(const std::string& jpeg, const ImageMetadata& meta) {
  if (jpeg.size() < 4 || (meta.icc.empty() && meta.exif.empty())) return jpeg;
  // After SOI, and after a JFIF APP0 when there is one (JFIF wants it first).
  size_t at = 2;
  if (static_cast<unsigned char>(jpeg[2]) == 0xff && static_cast<unsigned char>(jpeg[3]) == 0xe0 && jpeg.size() >= 6)
    at = std::min(jpeg.size(), 4 + size_t(get_u16(jpeg, 4, true)));
  std::string segments;
  const size_t max_payload = 65533;
  if (!meta.exif.empty() && meta.exif.size() + 6 <= max_payload)
    segments += "\xff\xe1" + be16(meta.exif.size() + 8) + std::string("Exif\0\0", 6) + meta.exif;
  const size_t icc_chunk = max_payload - 14;
  const size_t chunks = (meta.icc.size() + icc_chunk - 1) / icc_chunk;
  if (chunks >= 1 && chunks <= 255)
    for (size_t i = 0; i < chunks; ++i) {
      const std::string part = meta.icc.substr(i * icc_chunk, icc_chunk);
      segments += "\xff\xe2" + be16(part.size() + 16) + std::string("ICC_PROFILE\0", 12) + char(i + 1) +
                  char(chunks) + part;
    }
  return jpeg.substr(0, at) + segments + jpeg.substr(at);
}

std::string add_png_metadata(const std::string& png, const ImageMetadata& meta) {
  const size_t after_ihdr = 8 + 12 + 13;
  if (png.size() < after_ihdr || png.compare(12, 4, "IHDR") != 0 || (meta.icc.empty() && meta.exif.empty()))
    return png;
  std::string chunks;
  if (!meta.icc.empty()) {
    uLongf bound = compressBound(uLong(meta.icc.size()));
    std::string z(bound, '\0');
    if (compress2(reinterpret_cast<Bytef*>(z.data()), &bound, reinterpret_cast<const Bytef*>(meta.icc.data()),
                  uLong(meta.icc.size()), Z_BEST_SPEED) == Z_OK) {
      z.resize(bound);
      chunks += png_chunk("iCCP", std::string("ICC Profile\0\0", 13) + z);
    }
  }
  if (!meta.exif.empty()) chunks += png_chunk("eXIf", meta.exif);
  return png.substr(0, after_ihdr) + chunks + png.substr(after_ihdr);
}

}  // namespace pconv
