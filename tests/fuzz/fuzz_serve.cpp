// libFuzzer target: inpaint-serve's request parsing (apps/serving/serve_api.cpp: JSON, base64
// with or without a data: prefix, image and mask decoding, HD options) and, for a request that
// parses, the plan of passes the HD strategy makes for its mask (hole boxes, crop regions,
// merges). No model runs: everything before the network is what a hostile client reaches.
// Expected failures are serve::ApiError (400 or 413); anything else is a bug.
#include <cstdlib>

#include "apps/serving/serve_api.h"

using namespace pconv;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  serve::Limits limits;
  limits.max_body_bytes = 1 << 20;
  limits.max_pixels = 512 * 512;  // keeps each input's decode small; the check is the same code
  serve::InpaintRequest request;
  try {
    request = serve::parse_inpaint_request(body, limits, inference::HdOptions{});
  } catch (const serve::ApiError& e) {
    if (e.status != 400 && e.status != 413) std::abort();
    return 0;
  }
  const int64_t w = request.image.width, h = request.image.height;
  if (w <= 0 || h <= 0 || w * h > limits.max_pixels) std::abort();
  if (request.mask.width != w || request.mask.height != h) std::abort();
  // Plans with a small unit, so that crop regions are exercised at these small sizes.
  for (const auto& pass : inference::plan_passes(request.mask, request.hd, 8)) {
    const auto& r = pass.region;
    if (r.x0 < 0 || r.y0 < 0 || r.x1 > w || r.y1 > h || r.width() <= 0 || r.height() <= 0) std::abort();
    if (pass.pass_width <= 0 || pass.pass_height <= 0) std::abort();
  }
  return 0;
}
