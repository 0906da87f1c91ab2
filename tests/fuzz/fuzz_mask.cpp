// libFuzzer target: mask decoding (core/data/masks.cpp: colour or alpha, either convention) and,
// for masks of up to 64 K pixels, the augmentation training applies to mask files (dilation,
// rotation, translation, crop, nearest resize to 32×32).
#include <cstdlib>
#include <random>

#include "core/data/masks.h"

using namespace pconv;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const MaskHoles holes = data[0] & 1 ? MaskHoles::Black : MaskHoles::White;
  const std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  LoadedMask m;
  try {
    m = mask_from_image(decode_image_u8(bytes, "fuzz", int64_t(2048) * 2048, ImageAlpha::Keep), holes);
  } catch (const Error&) {
    return 0;
  }
  for (float v : m.mask.known)
    if (v != 0.0f && v != 1.0f) std::abort();  // masks are binary
  if (m.mask.height * m.mask.width <= 65536) {
    std::mt19937_64 rng(size);
    const MaskImage out = augment_mask(m.mask, 32, 32, rng);
    if (out.known.size() != 32 * 32) std::abort();
    hole_ratio(out);
  }
  return 0;
}
