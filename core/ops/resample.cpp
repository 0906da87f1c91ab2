// Nearest ×2 upsampling (features and masks, PAPER.md: "Upsampling is nearest-neighbour,
// for features and masks") and 2×2 max pooling (VGG-16 in the perceptual loss).
#include <memory>
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

namespace {
// The backend's kernel for `mode`, forward and adjoint (upsample_concat writes with the same).
void upsample_into(Backend& be, Upsampling mode, const Tensor& x, Tensor& y) {
  if (mode == Upsampling::Bilinear)
    be.upsample_bilinear2x(x, y);
  else
    be.upsample_nearest2x(x, y);
}
void upsample_adjoint(Backend& be, Upsampling mode, const Tensor& gy, Tensor& gx) {
  if (mode == Upsampling::Bilinear)
    be.upsample_bilinear2x_backward(gy, gx);
  else
    be.upsample_nearest2x_backward(gy, gx);
}
}  // namespace

// Bilinear is not the paper's (features and masks nearest): a decoder choice for adversarial
// training, where nearest copies of a level's features show as a blocky grid (models/pconv_unet.h).
Tensor upsample2x(const Tensor& x, Upsampling mode) {
  const char* op = mode == Upsampling::Bilinear ? "upsample_bilinear2x" : "upsample_nearest2x";
  check_nchw(op, x);
  const Shape& s = x.shape();
  Tensor y = Tensor::empty({s[0], s[1], 2 * s[2], 2 * s[3]}, x.dtype(), x.device());
  upsample_into(backend_of(x), mode, x, y);
  const Shape xs = s;
  return record(y, op, {x}, [xs, mode](const Node&, const Tensor& gy) {
    Tensor gx = Tensor::empty(xs, gy.dtype(), gy.device());
    upsample_adjoint(backend_of(gy), mode, gy, gx);
    return std::vector<Tensor>{gx};
  });
}

Tensor upsample_nearest2x(const Tensor& x) { return upsample2x(x, Upsampling::Nearest); }
Tensor upsample_bilinear2x(const Tensor& x) { return upsample2x(x, Upsampling::Bilinear); }

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

namespace {

// Channels [c0, c0 + count) of image n of a contiguous N×C×H×W tensor, as a 1×count×H×W view
// of the same storage (contiguous, so any kernel can write it). No graph.
Tensor channel_view(const Tensor& t, int64_t n, int64_t c0, int64_t count) {
  auto impl = std::make_shared<TensorImpl>();
  const TensorImpl& src = *t.impl();
  impl->shape = {1, count, src.shape[2], src.shape[3]};
  impl->dtype = src.dtype;
  impl->device = src.device;
  impl->storage = src.storage;
  impl->offset = src.offset + (n * src.shape[1] + c0) * src.shape[2] * src.shape[3];
  return Tensor(impl);
}

}  // namespace

Tensor upsample_concat(const Tensor& low, const Tensor& skip, Upsampling mode) {
  const char* op = "upsample_concat";
  check_grad_mode_off(op);
  check_nchw(op, low);
  check_defined(op, "skip", skip);
  if (skip.dim() != 4)
    throw Error(std::string(op) + ": skip must be N×C×H×W, got shape " + shape_str(skip.shape()));
  check_same_device(op, low, "low", skip, "skip");
  check_same_dtype(op, low, "low", skip, "skip");
  const int64_t N = low.size(0), C_low = low.size(1), C_skip = skip.size(1);
  const int64_t H = skip.size(2), W = skip.size(3);
  if (skip.size(0) != N || H != 2 * low.size(2) || W != 2 * low.size(3))
    throw Error(std::string(op) + ": skip " + shape_str(skip.shape()) + " is not twice the size of low " +
                shape_str(low.shape()));
  Tensor y = Tensor::empty({N, C_low + C_skip, H, W}, low.dtype(), low.device());
  Backend& be = backend_of(low);
  // Image by image, the upsampled channels are one contiguous block of y.
  for (int64_t n = 0; n < N; ++n) {
    Tensor part = channel_view(y, n, 0, C_low);
    upsample_into(be, mode, channel_view(low, n, 0, C_low), part);
  }
  be.copy_into_slice(skip, y, 1, C_low);
  return y;
}

}  // namespace pconv
