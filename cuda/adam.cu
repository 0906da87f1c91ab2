// One Adam step (Kingma & Ba) on one parameter tensor, bias corrections folded into the
// step: m = β1 m + (1-β1) g, v = β2 v + (1-β2) g², p -= lr · (m / c1) / (sqrt(v / c2) + ε)
// with c_i = 1 - β_i^step.
#include <cmath>

#include "cuda/kernel_util.cuh"

namespace pconv {

namespace {

template <typename T>
__global__ void adam_kernel(T* param, const T* grad, T* m, T* v, int64_t n, T lr, T beta1, T beta2,
                            T eps, T correction1, T correction2) {
  PCONV_GRID_STRIDE(i, n) {
    const T g = grad[i];
    const T mi = beta1 * m[i] + (T(1) - beta1) * g;
    const T vi = beta2 * v[i] + (T(1) - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] -= lr * (mi / correction1) / (dev_sqrt(vi / correction2) + eps);
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
        param.data<T>(), grad.data<T>(), m.data<T>(), v.data<T>(), n, T(p.lr), T(p.beta1),
        T(p.beta2), T(p.eps), T(c1), T(c2));
  });
  CUDA_CHECK_LAUNCH("adam_step param " + shapes_of(param));
}

}  // namespace pconv
