// Nearest ×2 upsampling (features and masks, PAPER.md: "Upsampling is nearest-neighbour,
// for features and masks") and 2×2 max pooling (VGG-16 in the perceptual loss).
#include <string>

#include "core/ops.h"

namespace pconv {

namespace {
void check_nchw(const char* op, const Tensor& x) {
  check_defined(op, "x", x);
  if (x.dim() != 4)
    throw Error(std::string(op) + ": x must be N×C×H×W, got shape " + shape_str(x.shape()));
}
}  // namespace

Tensor upsample_nearest2x(const Tensor& x) {
  check_nchw("upsample_nearest2x", x);
  const Shape& s = x.shape();
  Tensor y = Tensor::empty({s[0], s[1], 2 * s[2], 2 * s[3]}, x.dtype(), x.device());
  backend_of(x).upsample_nearest2x(x, y);
  const Shape xs = s;
  return record(y, "upsample_nearest2x", {x}, [xs](const Node&, const Tensor& gy) {
    Tensor gx = Tensor::empty(xs, gy.dtype(), gy.device());
    backend_of(gy).upsample_nearest2x_backward(gy, gx);
    return std::vector<Tensor>{gx};
  });
}

// Masks carry no gradient: each group's N×1×H×W mask is upsampled on its own.
Mask upsample_nearest2x(const Mask& m) {
  Mask out;
  out.reserve(m.size());
  for (const MaskGroup& g : m) {
    check_nchw("upsample_nearest2x (mask)", g.mask);
    const Shape& s = g.mask.shape();
    Tensor up = Tensor::empty({s[0], s[1], 2 * s[2], 2 * s[3]}, g.mask.dtype(), g.mask.device());
    backend_of(g.mask).upsample_nearest2x(g.mask, up);
    out.push_back({g.channels, up});
  }
  return out;
}

// 2×2 windows, stride 2; an odd last row or column is dropped, as PyTorch's floor mode.
Tensor max_pool2d(const Tensor& x) {
  check_nchw("max_pool2d", x);
  const Shape& s = x.shape();
  if (s[2] < 2 || s[3] < 2)
    throw Error("max_pool2d: input " + shape_str(s) + " is smaller than the 2×2 window");
  Tensor y = Tensor::empty({s[0], s[1], s[2] / 2, s[3] / 2}, x.dtype(), x.device());
  backend_of(x).max_pool2x2(x, y);
  const Tensor xd = x.detach();
  return record(y, "max_pool2d", {x}, [xd](const Node&, const Tensor& gy) {
    Tensor gx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
    backend_of(xd).max_pool2x2_backward(xd, gy, gx);
    return std::vector<Tensor>{gx};
  });
}

}  // namespace pconv
