#include "layers/spectral_norm.h"

#include <cmath>
#include <string>

#include "core/autograd.h"

namespace pconv {

namespace {

// The weight as the K×(rest) matrix whose largest singular value is σ.
Tensor as_matrix(const Tensor& w) { return w.reshape({w.size(0), w.numel() / w.size(0)}); }

void check_vectors(const Tensor& w, const Tensor& u, const Tensor& v) {
  check_defined("spectral_normalize", "w", w);
  if (w.dim() < 2 || u.numel() != w.size(0) || v.numel() * w.size(0) != w.numel())
    throw Error("spectral_normalize: w " + shape_str(w.shape()) + " needs u of " + std::to_string(w.size(0)) +
                " and v of " + std::to_string(w.numel() / std::max<int64_t>(w.size(0), 1)) + " values, got " +
                shape_str(u.shape()) + " and " + shape_str(v.shape()));
}

// x / ‖x‖ (PyTorch's normalize: divided by max(‖x‖, eps)).
Tensor normalized(const Tensor& x) {
  const double norm = std::sqrt(sum(square(x)).item());
  return x * (1.0 / std::max(norm, 1e-12));
}

}  // namespace

Tensor spectral_sigma(const Tensor& w, const Tensor& u, const Tensor& v) {
  check_vectors(w, u, v);
  const Tensor wv = matmul(as_matrix(w), v.detach().reshape({v.numel(), 1}));  // K×1
  return sum(wv * u.detach().reshape({u.numel(), 1}));
}

Tensor spectral_normalize(const Tensor& w, const Tensor& u, const Tensor& v) {
  return w / spectral_sigma(w, u, v);
}

void power_iteration(const Tensor& w, Tensor& u, Tensor& v) {
  check_vectors(w, u, v);
  NoGradGuard no_grad;
  const Tensor m = as_matrix(w.detach());
  const Tensor new_v = normalized(matmul(m, u.reshape({u.numel(), 1}), /*trans_a=*/true));  // (rest)×1
  const Tensor new_u = normalized(matmul(m, new_v));                                         // K×1
  backend_of(v).copy(new_v, v);
  backend_of(u).copy(new_u, u);
}

SNConv2d::SNConv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride, int64_t pad,
                   Generator& gen, DType dtype, Device device)
    : stride_(stride), pad_(pad) {
  if (in_channels < 1 || out_channels < 1 || kernel < 1 || stride < 1 || pad < 0)
    throw Error("SNConv2d: in_channels " + std::to_string(in_channels) + ", out_channels " +
                std::to_string(out_channels) + ", kernel " + std::to_string(kernel) + ", stride " +
                std::to_string(stride) + ", pad " + std::to_string(pad) + " out of range");
  const int64_t fan_in = in_channels * kernel * kernel;
  // PyTorch's Conv2d default (Kaiming-uniform with a = √5, i.e. ±1/√fan_in for both); the
  // scale hardly matters since the weight is divided by its spectral norm.
  const double bound = 1.0 / std::sqrt(double(fan_in));
  weight_ = &register_parameter(
      "weight", Tensor::rand({out_channels, in_channels, kernel, kernel}, gen, dtype, device, -bound, bound));
  bias_ = &register_parameter("bias", Tensor::rand({out_channels}, gen, dtype, device, -bound, bound));
  // u, v start as random unit vectors, as PyTorch's; a few iterations put σ near its value
  // from the first step on (PyTorch does 15 at construction).
  u_ = &register_buffer("weight_u", normalized(Tensor::randn({out_channels}, gen, dtype, device)));
  v_ = &register_buffer("weight_v", normalized(Tensor::randn({fan_in}, gen, dtype, device)));
  for (int i = 0; i < 15; ++i) power_iterate();
}

Tensor SNConv2d::forward(const Tensor& x) const {
  return conv2d(x, spectral_normalize(*weight_, *u_, *v_), *bias_, stride_, pad_);
}

Tensor SNConv2d::forward(const Tensor& x, Activation act, double slope) const {
  return conv2d(x, spectral_normalize(*weight_, *u_, *v_), *bias_, stride_, pad_, act, slope);
}

}  // namespace pconv
