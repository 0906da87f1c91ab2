#pragma once
// Zip archives written byte by byte (PKWARE APPNOTE 4.3.7, 4.3.12, 4.3.16), so tests and fuzz
// seeds can say anything in the headers: a declared size the data cannot hold, a deflate
// stream that inflates past what it declares. Only what the checkpoint reader meets: stored (0)
// and deflate (8) entries, 32-bit sizes, no extra fields.
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace pconv::testing {

struct ZipEntry {
  std::string name;
  std::string data;        // the bytes as stored (already deflated for method 8)
  uint16_t method = 0;     // 0 stored, 8 deflate
  uint32_t crc = 0;        // of the inflated bytes
  uint32_t size = 0;       // declared inflated size
};

// A stored entry holding `bytes`, its header honest.
inline ZipEntry stored_entry(const std::string& name, const std::string& bytes) {
  return {name, bytes, 0, uint32_t(crc32(0, reinterpret_cast<const Bytef*>(bytes.data()), uInt(bytes.size()))),
          uint32_t(bytes.size())};
}

// A deflated entry of `zeros` zero bytes, made a 64 KiB block at a time (no buffer of that size
// is ever held); its header honest.
inline ZipEntry deflated_zeros(const std::string& name, uint64_t zeros) {
  z_stream z{};
  deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY);  // raw deflate, as zip holds it
  const std::vector<unsigned char> block(size_t(64) << 10, 0);
  std::vector<unsigned char> out(size_t(64) << 10);
  std::string data;
  uLong crc = crc32(0, nullptr, 0);
  for (uint64_t left = zeros;;) {
    const uInt n = uInt(std::min<uint64_t>(left, block.size()));
    crc = crc32(crc, block.data(), n);
    left -= n;
    z.next_in = const_cast<Bytef*>(block.data());
    z.avail_in = n;
    const int flush = left == 0 ? Z_FINISH : Z_NO_FLUSH;
    do {
      z.next_out = out.data();
      z.avail_out = uInt(out.size());
      deflate(&z, flush);
      data.append(reinterpret_cast<const char*>(out.data()), out.size() - z.avail_out);
    } while (z.avail_out == 0);
    if (left == 0) break;
  }
  deflateEnd(&z);
  return {name, data, 8, uint32_t(crc), uint32_t(zeros)};
}

inline std::string zip_archive_bytes(const std::vector<ZipEntry>& entries) {
  auto u16 = [](std::string& s, uint32_t v) { s += char(v & 0xff), s += char((v >> 8) & 0xff); };
  auto u32 = [&](std::string& s, uint32_t v) { u16(s, v & 0xffff), u16(s, v >> 16); };
  std::string file, directory;
  for (const ZipEntry& e : entries) {
    const uint32_t offset = uint32_t(file.size());
    auto common = [&](std::string& s) {  // version needed .. name length, shared by both headers
      u16(s, 20), u16(s, 0), u16(s, e.method), u16(s, 0), u16(s, 0x21);  // needed, flags, method, time, date
      u32(s, e.crc), u32(s, uint32_t(e.data.size())), u32(s, e.size), u16(s, uint32_t(e.name.size()));
      u16(s, 0);  // extra field length
    };
    u32(file, 0x04034b50);
    common(file);
    file += e.name + e.data;
    u32(directory, 0x02014b50);
    u16(directory, 20);  // made by
    common(directory);
    u16(directory, 0), u16(directory, 0), u16(directory, 0), u32(directory, 0);  // comment, disk, attributes
    u32(directory, offset);
    directory += e.name;
  }
  const uint32_t at = uint32_t(file.size());
  file += directory;
  u32(file, 0x06054b50), u16(file, 0), u16(file, 0), u16(file, uint32_t(entries.size()));
  u16(file, uint32_t(entries.size())), u32(file, uint32_t(directory.size())), u32(file, at), u16(file, 0);
  return file;
}

}  // namespace pconv::testing
