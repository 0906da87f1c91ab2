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
  std::string read(const std::string& name, int64_t expected = -1) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pconv
