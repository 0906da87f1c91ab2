#pragma once
// Reading entries of a zip archive (PyTorch's checkpoint format since 1.6) through Debian's
// libzip. A build without libzip (PCONV_HAVE_LIBZIP unset: a bare GPU machine) still compiles:
// opening an archive then throws an Error saying so.
#include <memory>
#include <string>
#include <vector>

namespace pconv {

// False when pconv was built without libzip.
bool zip_supported();

class ZipArchive {
 public:
  // Throws Error("a zip archive that is truncated or corrupt (<libzip's reason>)").
  explicit ZipArchive(const std::string& path);
  ~ZipArchive();
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;

  std::vector<std::string> names() const;
  bool has(const std::string& name) const;
  // The whole entry, its CRC checked; `expected` (when >= 0) must be its size. Throws Error
  // naming the entry when it is missing, of another size, truncated or corrupt.
  //
  // Sizes in a zip directory are claims: nothing is allocated for an entry before its declared
  // size is checked against what its bytes in the file can hold (stored: its compressed size;
  // deflate: kMaxDeflateRatio times it; other methods are refused), against `max_bytes` (when
  // >= 0) and against the memory budget (core/available_memory.h). Then it is inflated a chunk at
  // a time and refused as soon as it gives more than it declared.
  std::string read(const std::string& name, int64_t expected = -1, int64_t max_bytes = -1) const;

  // Deflate's largest possible expansion: a 258-byte match costs at least 2 bits, so one byte of
  // deflate data gives at most 1032 bytes (zlib's technical details, "maximum compression factor").
  static constexpr int64_t kMaxDeflateRatio = 1032;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pconv
