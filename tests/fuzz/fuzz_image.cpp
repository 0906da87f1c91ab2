// libFuzzer target: image decoding (core/io/image.cpp) from memory and streamed from a file; the
// two paths must agree. The pixel limit is 2048² here (the tools use 8192²) so that inputs
// whose header claims a large image do not slow the search down; the per-allocation cap
// scales with it.
#include <cstdlib>

#include "core/io/image.h"
#include "tests/fuzz/fuzz_util.h"

using namespace pconv;

namespace {
constexpr int64_t kFuzzMaxPixels = int64_t(2048) * 2048;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemoryFile input;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const ImageAlpha alpha = size % 2 ? ImageAlpha::Keep : ImageAlpha::Drop;
  bool from_memory_ok = false, from_file_ok = false;
  ImageU8 a, b;
  try {
    a = decode_image_u8(bytes, "fuzz", kFuzzMaxPixels, alpha);
    from_memory_ok = true;
    image_to_tensor(a);
  } catch (const Error&) {
  }
  try {
    b = read_image_u8(input.write(data, size), kFuzzMaxPixels, alpha);
    from_file_ok = true;
  } catch (const Error&) {
  }
  if (from_memory_ok != from_file_ok) std::abort();
  if (from_memory_ok && (a.width != b.width || a.height != b.height || a.rgb != b.rgb || a.alpha != b.alpha ||
                         a.channels_in_file != b.channels_in_file))
    std::abort();
  return 0;
}
