// One Adam step on one parameter tensor, in PyTorch's order of operations
// (torch/optim/adam.py, _single_tensor_adam):
//   m = lerp(m, g, 1-β1)              (m + (1-β1)(g - m))
//   v = β2 v + (1-β2) g²
//   p -= (lr / c1) · m / (sqrt(v) / sqrt(c2) + ε),   c_i = 1 - β_i^step
// The bias-correction scalars are computed in double, as Python does, then used in T.
#include <cmath>

#include "core/cpu/cpu_backend.h"

namespace pconv {

namespace {

void check_like(const Tensor& param, const Tensor& t, const char* name) {
  if (t.numel() != param.numel() || t.dtype() != param.dtype())
    throw Error(std::string("adam_step: ") + name + " is " + shape_str(t.shape()) + " " +
                dtype_name(t.dtype()) + ", param is " + shape_str(param.shape()) + " " +
                dtype_name(param.dtype()));
}

// torch.lerp's CPU formula: the branch keeps it exact at both ends of the weight.
template <typename T>
T lerp(T self, T end, T weight) {
  return std::abs(weight) < T(0.5) ? self + weight * (end - self)
                                   : end - (end - self) * (T(1) - weight);
}

}  // namespace

void CpuBackend::adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                           const AdamParams& p) {
  check_like(param, grad, "grad");
  check_like(param, m, "m");
  check_like(param, v, "v");
  if (p.step < 1) throw Error("adam_step: step " + std::to_string(p.step) + " is not 1-based");
  const double correction1 = 1.0 - std::pow(p.beta1, double(p.step));
  const double correction2 = 1.0 - std::pow(p.beta2, double(p.step));
  const double step_size = p.lr / correction1;
  const double correction2_sqrt = std::sqrt(correction2);
  const int64_t n = param.numel();
  dispatch_float("adam_step", param.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* pp = param.data<T>();
    const T* gp = grad.data<T>();
    T* mp = m.data<T>();
    T* vp = v.data<T>();
    const T one_minus_beta1 = T(1.0 - p.beta1), beta2 = T(p.beta2), one_minus_beta2 = T(1.0 - p.beta2);
    const T c2_sqrt = T(correction2_sqrt), eps = T(p.eps), neg_step = T(-step_size);
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) {
      const T g = gp[i];
      const T mi = lerp(mp[i], g, one_minus_beta1);
      const T vi = vp[i] * beta2 + one_minus_beta2 * g * g;  // mul_ then addcmul_
      mp[i] = mi;
      vp[i] = vi;
      const T denom = std::sqrt(vi) / c2_sqrt + eps;
      pp[i] += neg_step * mi / denom;  // addcdiv_: p + value · m / denom
    }
  });
}

}  // namespace pconv
