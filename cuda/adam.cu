// One Adam step on one parameter tensor in PyTorch's order of operations, as the CPU
// backend (core/cpu/adam.cpp):
//   m = lerp(m, g, 1-β1),  v = β2 v + (1-β2) g²,
//   p -= (lr / c1) · m / (sqrt(v) / sqrt(c2) + ε),   c_i = 1 - β_i^step (in double).
#include <cmath>

#include "cuda/kernel_util.cuh"

namespace pconv {

namespace {

// torch.lerp's formula: exact at both ends of the weight.
template <typename T>
__device__ T lerp(T self, T end, T weight) {
  return dev_abs(weight) < T(0.5) ? self + weight * (end - self)
                                  : end - (end - self) * (T(1) - weight);
}

template <typename T>
__global__ void adam_kernel(T* param, const T* grad, T* m, T* v, int64_t n, T one_minus_beta1,
                            T beta2, T one_minus_beta2, T c2_sqrt, T eps, T neg_step) {
  PCONV_GRID_STRIDE(i, n) {
    const T g = grad[i];
    const T mi = lerp(m[i], g, one_minus_beta1);
    const T vi = v[i] * beta2 + one_minus_beta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    const T denom = dev_sqrt(vi) / c2_sqrt + eps;
    param[i] += neg_step * mi / denom;
  }
}

}  // namespace

void CudaBackend::adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                            const AdamParams& p) {
  check_numel("adam_step", param, "param", grad, "grad");
  check_numel("adam_step", param, "param", m, "m");
  check_numel("adam_step", param, "param", v, "v");
  if (p.step < 1) throw Error("adam_step: step " + std::to_string(p.step) + " is not 1-based");
  const int64_t n = param.numel();
  if (n == 0) return;
  const double c1 = 1.0 - std::pow(p.beta1, double(p.step));
  const double c2 = 1.0 - std::pow(p.beta2, double(p.step));
  cuda_dispatch_float("adam_step", param.dtype(), [&](auto tag) {
    using T = decltype(tag);
    adam_kernel<T><<<blocks_for(n), kThreads, 0, stream_>>>(
        param.data<T>(), grad.data<T>(), m.data<T>(), v.data<T>(), n, T(1.0 - p.beta1),
        T(p.beta2), T(1.0 - p.beta2), T(std::sqrt(c2)), T(p.eps), T(-(p.lr / c1)));
  });
  CUDA_CHECK_LAUNCH("adam_step param " + shapes_of(param));
}

}  // namespace pconv
