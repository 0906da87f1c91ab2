// conv2d: forward and backward side by side. The backend does the convolution without bias;
// the bias is added here as a broadcast over N, H, W and its gradient is gy summed over them.
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
  check_conv_args("conv2d", x, w, bias);
  const Shape out_shape = conv2d_output_shape("conv2d", x, w, stride, pad);
  const Conv2dParams p{stride, pad};
  Backend& be = backend_of(x);
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  be.conv2d_forward(x, w, y, p);
  if (bias.defined()) {
    Tensor biased = Tensor::empty(out_shape, x.dtype(), x.device());
    be.binary(BinaryOp::Add, y, bias.reshape({1, w.size(0), 1, 1}), biased);
    y = biased;
  }
  // Save x only for w's gradient and w only for x's (detached: the graph is not kept alive).
  const Tensor saved_x = w.requires_grad() ? x.detach() : Tensor();
  const Tensor saved_w = x.requires_grad() ? w.detach() : Tensor();
  auto backward = [saved_x, saved_w, x_shape = x.shape(), w_shape = w.shape(), p](
                      const Node& n, const Tensor& gy) {
    Backend& b = backend_of(gy);
    std::vector<Tensor> grads(3);
    if (n.needs_grad(0)) {
      grads[0] = Tensor::empty(x_shape, gy.dtype(), gy.device());
      b.conv2d_backward_data(gy, saved_w, grads[0], p);
    }
    if (n.needs_grad(1)) {
      grads[1] = Tensor::empty(w_shape, gy.dtype(), gy.device());
      b.conv2d_backward_weight(gy, saved_x, grads[1], p);
    }
    if (n.needs_grad(2)) grads[2] = bias_gradient(gy);
    return grads;
  };
  return record(y, "conv2d", {x, w, bias}, backward);
}

}  // namespace pconv
