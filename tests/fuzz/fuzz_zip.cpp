// libFuzzer target: the zip reader (core/io/zip_archive.h) on any bytes: every entry read with a
// 16 MiB cap, so a declared size must pass the ratio, cap and memory-budget checks before the
// reader allocates it, and an entry inflating past what it declares is cut off.
#include "core/dtype.h"
#include "core/io/zip_archive.h"
#include "tests/fuzz/fuzz_util.h"

using namespace pconv;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (!zip_supported()) return 0;
  static fuzz::MemoryFile input;
  const std::string& path = input.write(data, size);
  try {
    ZipArchive zip(path);
    int entries = 0;
    for (const std::string& name : zip.names()) {
      if (++entries > 64) break;
      try {
        (void)zip.has(name);
        (void)zip.read(name, -1, int64_t(16) << 20);
      } catch (const Error&) {
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
