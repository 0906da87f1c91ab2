// partial_conv2d: the paper's partial convolution (PAPER.md "Partial convolution") on a
// grouped mask (DESIGN.md "Masks: groups"), forward and backward side by side.
//
//   count = Σ_g C_g · boxsum(m_g)                 (sum(M) of each window)
//   out   = conv(x ⊙ m, W) · C_in·kh·kw / count + b    where count > 0, else exactly 0
//   mask' = [count > 0]
//
// The ratio and the hole test depend only on the mask, which carries no gradient, so the
// backward is the plain conv backward applied to g = gy · ratio · [count > 0], with x ⊙ m
// saved for the weight gradient; x's gradient is masked again because x enters only as x ⊙ m.
#include "core/ops.h"
#include "core/ops/conv_checks.h"

namespace pconv {

namespace {

std::string group_name(size_t i) { return "mask group " + std::to_string(i); }

// Each group N×1×H×W like x, same dtype and device, channel counts adding up to C.
void check_mask(const char* op, const Mask& mask, const Tensor& x) {
  if (mask.empty()) throw Error(std::string(op) + ": the mask has no groups");
  const Shape want{x.size(0), 1, x.size(2), x.size(3)};
  for (size_t i = 0; i < mask.size(); ++i) {
    const MaskGroup& g = mask[i];
    const std::string name = group_name(i);
    check_defined(op, name.c_str(), g.mask);
    if (g.channels < 1)
      throw Error(std::string(op) + ": " + name + " has " + std::to_string(g.channels) + " channels");
    if (g.mask.shape() != want)
      throw Error(std::string(op) + ": " + name + " has shape " + shape_str(g.mask.shape()) +
                  ", expected " + shape_str(want) + " for input " + shape_str(x.shape()));
    check_same_device(op, x, "input", g.mask, name.c_str());
    check_same_dtype(op, x, "input", g.mask, name.c_str());
  }
  if (mask_channels(mask) != x.size(1))
    throw Error(std::string(op) + ": mask groups cover " + std::to_string(mask_channels(mask)) +
                " channels, input " + shape_str(x.shape()) + " has " + std::to_string(x.size(1)));
}

}  // namespace

int64_t mask_channels(const Mask& mask) {
  int64_t c = 0;
  for (const MaskGroup& g : mask) c += g.channels;
  return c;
}

Tensor mask_expand(const Mask& mask) {
  if (mask.empty()) throw Error("mask_expand: the mask has no groups");
  const Tensor& m0 = mask[0].mask;
  check_defined("mask_expand", "mask group 0", m0);
  check_rank("mask_expand", "mask group 0", m0, 4);
  Tensor ones = Tensor::ones({m0.size(0), mask_channels(mask), m0.size(2), m0.size(3)}, m0.dtype(),
                             m0.device());
  check_mask("mask_expand", mask, ones);
  Tensor y = Tensor::empty(ones.shape(), ones.dtype(), ones.device());
  backend_of(ones).mask_apply(ones, mask, y);
  return y;
}

namespace {

// The forward after masking: y = conv(xm, w) scaled by window/count plus bias where count > 0,
// else 0; new_mask = [count > 0].
struct PConvForward {
  Tensor y, count, new_mask;
  double window;
  Conv2dParams p;
};
PConvForward pconv_forward(const char* op, const Tensor& xm, const Mask& mask, const Tensor& w,
                           const Tensor& bias, int64_t stride, int64_t pad) {
  const Shape out_shape = conv2d_output_shape(op, xm, w, stride, pad);
  PConvForward f;
  f.p = Conv2dParams{stride, pad};
  f.window = double(w.size(1) * w.size(2) * w.size(3));  // sum(1) = C_in·kh·kw
  const Shape mask_shape{out_shape[0], 1, out_shape[2], out_shape[3]};
  Backend& be = backend_of(xm);
  f.y = Tensor::empty(out_shape, xm.dtype(), xm.device());
  be.conv2d_forward(xm, w, f.y, f.p);
  f.count = Tensor::empty(mask_shape, xm.dtype(), xm.device());
  be.pconv_count(mask, w.size(2), w.size(3), f.p, f.count);
  f.new_mask = Tensor::empty(mask_shape, xm.dtype(), xm.device());
  be.pconv_epilogue(f.y, f.count, bias, f.window, f.new_mask);
  return f;
}

}  // namespace

PConvResult partial_conv2d_(Tensor& x, const Mask& mask, const Tensor& w, const Tensor& bias,
                            int64_t stride, int64_t pad) {
  const char* op = "partial_conv2d_";
  check_grad_mode_off(op);
  check_conv_args(op, x, w, bias);
  check_mask(op, mask, x);
  conv2d_output_shape(op, x, w, stride, pad);  // before x is overwritten
  backend_of(x).mask_apply(x, mask, x);        // elementwise: in place is safe
  PConvForward f = pconv_forward(op, x, mask, w, bias, stride, pad);
  return PConvResult{f.y, Mask{{f.y.size(1), f.new_mask}}};
}

PConvResult partial_conv2d(const Tensor& x, const Mask& mask, const Tensor& w, const Tensor& bias,
                           int64_t stride, int64_t pad) {
  const char* op = "partial_conv2d";
  check_conv_args(op, x, w, bias);
  check_mask(op, mask, x);
  conv2d_output_shape(op, x, w, stride, pad);
  Tensor xm = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_of(x).mask_apply(x, mask, xm);
  PConvForward f = pconv_forward(op, xm, mask, w, bias, stride, pad);
  const Tensor y = f.y, count = f.count, new_mask = f.new_mask;
  const double window = f.window;
  const Conv2dParams p = f.p;
  const Shape out_shape = y.shape();

  // Keep only what the needed gradients use: w and the mask for x's, x ⊙ m for w's, the new
  // mask for the bias's.
  const bool gx_needed = x.requires_grad(), gw_needed = w.requires_grad();
  const bool gb_needed = bias.defined() && bias.requires_grad();
  const Tensor saved_w = gx_needed ? w.detach() : Tensor();
  const Mask saved_mask = gx_needed ? mask : Mask();
  const Tensor saved_xm = gw_needed ? xm : Tensor();
  const Tensor saved_new_mask = gb_needed ? new_mask : Tensor();
  auto backward = [saved_w, saved_mask, saved_xm, saved_new_mask, count, window, p,
                   x_shape = x.shape(), w_shape = w.shape()](const Node& n, const Tensor& gy) {
    Backend& b = backend_of(gy);
    std::vector<Tensor> grads(3);
    Tensor g;
    if (n.needs_grad(0) || n.needs_grad(1)) {
      g = Tensor::empty(gy.shape(), gy.dtype(), gy.device());
      b.pconv_grad_scale(gy, count, window, g);
    }
    if (n.needs_grad(0)) {
      // Masked in place (elementwise, so safe): one input-sized tensor fewer per layer and
      // step, whose fresh pages cost page faults on this machine's kernel.
      grads[0] = Tensor::empty(x_shape, gy.dtype(), gy.device());
      b.conv2d_backward_data(g, saved_w, grads[0], p);
      b.mask_apply(grads[0], saved_mask, grads[0]);
    }
    if (n.needs_grad(1)) {
      grads[1] = Tensor::empty(w_shape, gy.dtype(), gy.device());
      b.conv2d_backward_weight(g, saved_xm, grads[1], p);
    }
    if (n.needs_grad(2)) {  // the bias is added only where count > 0
      Tensor gy_valid = Tensor::empty(gy.shape(), gy.dtype(), gy.device());
      b.mask_apply(gy, Mask{{gy.size(1), saved_new_mask}}, gy_valid);
      grads[2] = bias_gradient(gy_valid);
    }
    return grads;
  };
  PConvResult r;
  r.out = record(y, op, {x, w, bias}, backward);
  r.mask = Mask{{out_shape[1], new_mask}};
  return r;
}

}  // namespace pconv
