// conv2d: forward and backward side by side. The backend does the convolution without bias;
// the bias (and an optional activation) follow in one pass over the output (Backend::
// bias_activation), and their gradients in one pass with the bias's sum over N, H, W.
#include "core/ops.h"
#include "core/ops/conv_checks.h"

namespace pconv {

namespace {

std::string dims(int64_t h, int64_t w) { return std::to_string(h) + "×" + std::to_string(w); }

}  // namespace

Shape conv2d_output_shape(const char* op, const Tensor& x, const Tensor& w, int64_t stride,
                          int64_t pad) {
  if (stride < 1) throw Error(std::string(op) + ": stride must be at least 1, got " + std::to_string(stride));
  if (pad < 0) throw Error(std::string(op) + ": pad must be non-negative, got " + std::to_string(pad));
  const int64_t kh = w.size(2), kw = w.size(3);
  const int64_t hp = x.size(2) + 2 * pad, wp = x.size(3) + 2 * pad;
  if (kh < 1 || kw < 1 || kh > hp || kw > wp)
    throw Error(std::string(op) + ": kernel " + dims(kh, kw) + " does not fit input " +
                shape_str(x.shape()) + " padded by " + std::to_string(pad));
  return {x.size(0), w.size(0), (hp - kh) / stride + 1, (wp - kw) / stride + 1};
}

void check_conv_args(const char* op, const Tensor& x, const Tensor& w, const Tensor& bias) {
  check_defined(op, "input", x);
  check_defined(op, "weight", w);
  check_rank(op, "input", x, 4);
  check_rank(op, "weight", w, 4);
  check_same_device(op, x, "input", w, "weight");
  check_same_dtype(op, x, "input", w, "weight");
  if (w.size(1) != x.size(1))
    throw Error(std::string(op) + ": weight has " + std::to_string(w.size(1)) +
                " input channels, input has " + std::to_string(x.size(1)));
  if (bias.defined()) {
    check_same_device(op, x, "input", bias, "bias");
    check_same_dtype(op, x, "input", bias, "bias");
    if (bias.dim() != 1 || bias.size(0) != w.size(0))
      throw Error(std::string(op) + ": bias has shape " + shape_str(bias.shape()) + ", expected [" +
                  std::to_string(w.size(0)) + "] for weight " + shape_str(w.shape()));
  }
}

Tensor bias_gradient(const Tensor& gy) {
  Tensor gb = Tensor::empty({1, gy.size(1), 1, 1}, gy.dtype(), gy.device());
  backend_of(gy).sum_to(gy, gb);
  return gb.reshape({gy.size(1)});
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, int64_t stride, int64_t pad) {
  return conv2d(x, w, bias, stride, pad, Activation::None);
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, int64_t stride, int64_t pad,
              Activation act, double slope) {
  check_conv_args("conv2d", x, w, bias);
  const Shape out_shape = conv2d_output_shape("conv2d", x, w, stride, pad);
  const Conv2dParams p{stride, pad};
  Backend& be = backend_of(x);
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  be.conv2d_forward(x, w, y, p);
  if (bias.defined() || act != Activation::None) be.bias_activation(y, bias, act, slope);
  // Save x only for w's gradient and w only for x's (detached: the graph is not kept alive);
  // the output for the activation's gradient (its sign is the input's).
  const Tensor saved_x = w.requires_grad() ? x.detach() : Tensor();
  const Tensor saved_w = x.requires_grad() ? w.detach() : Tensor();
  const Tensor saved_out = act != Activation::None ? y.detach() : Tensor();
  auto backward = [saved_x, saved_w, saved_out, act, slope, x_shape = x.shape(), w_shape = w.shape(), p](
                      const Node& n, const Tensor& gy) {
    Backend& b = backend_of(gy);
    std::vector<Tensor> grads(3);
    // The gradient at the convolution's output: gy itself without an activation; else gy · act',
    // with the bias's sum taken in the same pass.
    Tensor g = gy;
    if (act != Activation::None) {
      g = Tensor::empty(gy.shape(), gy.dtype(), gy.device());
      if (n.needs_grad(2)) grads[2] = Tensor::empty({gy.size(1)}, gy.dtype(), gy.device());
      b.bias_activation_backward(saved_out, gy, act, slope, g, grads[2]);
    } else if (n.needs_grad(2)) {
      grads[2] = bias_gradient(gy);
    }
    if (n.needs_grad(0)) {
      grads[0] = Tensor::empty(x_shape, gy.dtype(), gy.device());
      b.conv2d_backward_data(g, saved_w, grads[0], p);
    }
    if (n.needs_grad(1)) {
      grads[1] = Tensor::empty(w_shape, gy.dtype(), gy.device());
      b.conv2d_backward_weight(g, saved_x, grads[1], p);
    }
    return grads;
  };
  return record(y, "conv2d", {x, w, bias}, backward);
}

}  // namespace pconv
