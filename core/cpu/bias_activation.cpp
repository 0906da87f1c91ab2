// A convolution's epilogue in one pass: bias and activation forward, the activation's gradient
// and the bias's sum backward (core/backend.h). Each replaces two kernels that each read and wrote
// a whole tensor (a broadcast add and an activation; an activation gradient and a sum), with
// the same arithmetic in the same order, so the values are identical bit for bit.
#include "core/cpu/cpu_backend.h"
#include "core/cpu/no_trapping_math.h"
#include "core/cpu/sum_contiguous.h"

namespace pconv {

namespace {

constexpr int64_t kParallelMin = 32768;  // as the elementwise kernels: below, threads cost more

void check_epilogue(const char* op, const Tensor& y, Activation act, double slope) {
  if (y.dim() != 4) throw Error(std::string(op) + ": expected N×K×H×W, got " + shape_str(y.shape()));
  if (act == Activation::LeakyRelu && !(slope >= 0))
    throw Error(std::string(op) + ": leaky_relu slope " + std::to_string(slope) +
                " must be >= 0 (the gradient reads the sign of the output)");
}

// y = act(y + b) over one plane: the loops of binary(Add) and unary(Relu / LeakyRelu).
template <typename T>
PCONV_NO_TRAPPING_MATH void plane_forward(T* y, int64_t n, T b, Activation act, T a) {
  switch (act) {
    case Activation::None:
      for (int64_t i = 0; i < n; ++i) y[i] = y[i] + b;
      break;
    case Activation::Relu:
      for (int64_t i = 0; i < n; ++i) {
        const T v = y[i] + b;
        y[i] = !(v <= 0) ? v : T(0);  // NaN stays NaN, as unary(Relu)
      }
      break;
    case Activation::LeakyRelu:
      for (int64_t i = 0; i < n; ++i) {
        const T v = y[i] + b;
        y[i] = v > 0 ? v : a * v;
      }
      break;
  }
}

// g = gy · act'(x) with out > 0 standing for x > 0: the loops of pointwise_grad.
template <typename T>
PCONV_NO_TRAPPING_MATH void plane_backward(const T* out, const T* gy, T* g, int64_t n, Activation act, T a) {
  switch (act) {
    case Activation::None:
      for (int64_t i = 0; i < n; ++i) g[i] = gy[i];
      break;
    case Activation::Relu:
      for (int64_t i = 0; i < n; ++i) g[i] = out[i] > 0 ? gy[i] : T(0);
      break;
    case Activation::LeakyRelu:
      for (int64_t i = 0; i < n; ++i) g[i] = out[i] > 0 ? gy[i] : a * gy[i];
      break;
  }
}

}  // namespace

void CpuBackend::bias_activation(Tensor& y, const Tensor& bias, Activation act, double slope) {
  check_epilogue("bias_activation", y, act, slope);
  const int64_t N = y.size(0), K = y.size(1), hw = y.size(2) * y.size(3);
  dispatch_float("bias_activation", y.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* yp = y.data<T>();
    const T* bp = bias.defined() ? bias.data<T>() : nullptr;
    const T a = T(slope);
#pragma omp parallel for schedule(static) if (N * K * hw > kParallelMin)
    for (int64_t nk = 0; nk < N * K; ++nk) plane_forward(yp + nk * hw, hw, bp ? bp[nk % K] : T(0), act, a);
  });
}

// gbias[k] = Σ_n Σ_plane g, each plane summed as sum_to sums it (sum_contiguous, then the images
// in order), while the plane just written is still in cache.
void CpuBackend::bias_activation_backward(const Tensor& out, const Tensor& gy, Activation act,
                                          double slope, Tensor& g, Tensor& gbias) {
  check_epilogue("bias_activation_backward", out, act, slope);
  if (gy.shape() != out.shape() || g.shape() != out.shape())
    throw Error("bias_activation_backward: out " + shape_str(out.shape()) + ", gy " + shape_str(gy.shape()) +
                " and g " + shape_str(g.shape()) + " must have one shape");
  const int64_t N = out.size(0), K = out.size(1), hw = out.size(2) * out.size(3);
  // sum_to reduces a one-channel tensor as one run in chunks, not plane by plane: let it.
  const bool fused_sum = gbias.defined() && K > 1;
  dispatch_float("bias_activation_backward", out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T *op = out.data<T>(), *gp = gy.data<T>();
    T* dst = g.data<T>();
    const T a = T(slope);
    std::vector<double> plane_sums(fused_sum ? size_t(N * K) : 0);
#pragma omp parallel for schedule(static) if (N * K * hw > kParallelMin)
    for (int64_t nk = 0; nk < N * K; ++nk) {
      plane_backward(op + nk * hw, gp + nk * hw, dst + nk * hw, hw, act, a);
      if (fused_sum) plane_sums[size_t(nk)] = sum_contiguous(dst + nk * hw, hw);
    }
    if (!fused_sum) return;
    T* gb = gbias.data<T>();
    for (int64_t k = 0; k < K; ++k) {
      double acc = 0;
      for (int64_t n = 0; n < N; ++n) acc += plane_sums[size_t(n * K + k)];
      gb[k] = T(acc);
    }
  });
  if (gbias.defined() && !fused_sum) {
    Tensor sums = gbias.reshape({1, K, 1, 1});
    sum_to(g, sums);
  }
}

}  // namespace pconv
