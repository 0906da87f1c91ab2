// BatchNorm's apply, the UNet's noise term and the activation in one pass forward; the
// activation's gradient folded into BatchNorm's backward, with the noise strengths' sums in the
// same passes (core/backend.h). The composition they replace ran four kernels each way, each
// reading and writing a whole tensor; these do the same arithmetic in the same order, so the
// values are identical bit for bit (tests/test_bn_activation.cpp).
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "core/cpu/batchnorm_planes.h"
#include "core/cpu/cpu_backend.h"
#include "core/cpu/no_trapping_math.h"
#include "core/cpu/sum_contiguous.h"

namespace pconv {

namespace {

constexpr int64_t kParallelMin = 32768;  // as the elementwise kernels: below, threads cost more
// The noise term is rounded in a buffer of this many values before it is added: written as one
// expression, x·scale + β + noise·s, the compiler would fuse the product into the add (an FMA,
// another rounding) where the composition rounds the product on its own.
constexpr int64_t kChunk = 512;

void check_args(const char* op, const Tensor& x, const Tensor& noise, Activation act, double slope) {
  if (x.dim() != 4) throw Error(std::string(op) + ": expected N×C×H×W, got " + shape_str(x.shape()));
  if (noise.defined() && noise.shape() != Shape{x.size(0), 1, x.size(2), x.size(3)})
    throw Error(std::string(op) + ": noise " + shape_str(noise.shape()) + " must be N×1×H×W for x " +
                shape_str(x.shape()));
  if (act == Activation::LeakyRelu && !(slope >= 0))
    throw Error(std::string(op) + ": leaky_relu slope " + std::to_string(slope) +
                " must be >= 0 (the gradient reads the sign of the output)");
}

// The activation of unary(Relu / LeakyRelu). With the loops' no-trapping-math (GCC inlines no
// function whose optimisation options differ from its caller's: a call per value, no vectors).
template <Activation A, typename T>
PCONV_NO_TRAPPING_MATH inline T activate(T v, T a) {
  if constexpr (A == Activation::Relu) return !(v <= 0) ? v : T(0);  // NaN stays NaN
  if constexpr (A == Activation::LeakyRelu) return v > 0 ? v : a * v;
  return v;
}

// Its gradient from the output, as pointwise_grad computes it from the input (same sign).
template <Activation A, typename T>
PCONV_NO_TRAPPING_MATH inline T activation_grad(T out, T gy, T a) {
  if constexpr (A == Activation::Relu) return out > 0 ? gy : T(0);
  if constexpr (A == Activation::LeakyRelu) return out > 0 ? gy : a * gy;
  return gy;
}

// One N×C plane: y = act((x - m)·scale + b [+ noise·s]), the expressions of batch_norm_apply,
// binary(Mul), binary(Add) and unary.
template <Activation A, typename T>
PCONV_NO_TRAPPING_MATH void plane_forward(const T* x, const T* noise, T* y, int64_t n, T m, T scale, T b, T s,
                                          T a) {
  if (!noise) {
    for (int64_t i = 0; i < n; ++i) y[i] = activate<A>((x[i] - m) * scale + b, a);
    return;
  }
  T term[kChunk];
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const int64_t len = std::min(kChunk, n - i0);
    for (int64_t j = 0; j < len; ++j) term[j] = noise[i0 + j] * s;
    for (int64_t j = 0; j < len; ++j) {
      const T v = (x[i0 + j] - m) * scale + b;
      y[i0 + j] = activate<A>(v + term[j], a);
    }
  }
}

struct ChannelArgs {
  int64_t batch, channels, hw;
  double eps;
  bool batch_stats;
};

// g = gy · act'(out) over one plane, into the thread's buffer.
template <Activation A, typename T>
PCONV_NO_TRAPPING_MATH void plane_grad(const T* out, const T* gy, T* g, int64_t n, T a) {
  for (int64_t i = 0; i < n; ++i) g[i] = activation_grad<A>(out[i], gy[i], a);
}

// One channel's gradients: batch_norm_backward's two passes over the channel, each plane's g
// computed into `g` (hw values, in cache) and handed to the very code batch_norm_backward runs
// (core/cpu/batchnorm_planes.h); and Σ g·noise per plane as sum_to sums it (sum_contiguous of
// the rounded products, then the images in order).
template <Activation A, typename T>
void channel_backward(int64_t c, const ChannelArgs& l, const T* out, const T* gy, const T* x, const T* noise,
                      double m, double var, T gamma, T a, T* gx, T& ggamma, T& gbeta, T* gstrength, T* g) {
  const double istd = 1.0 / std::sqrt(var + l.eps);
  const double count = double(l.batch * l.hw);
  double sum_gy = 0, sum_gy_xhat = 0, sum_noise = 0;
  for (int64_t n = 0; n < l.batch; ++n) {
    const int64_t off = (n * l.channels + c) * l.hw;
    plane_grad<A>(out + off, gy + off, g, l.hw, a);
    batch_norm_grad_sums(g, x + off, l.hw, m, istd, sum_gy, sum_gy_xhat);
    if (gstrength) {
      const T* nz = noise + n * l.hw;
      for (int64_t i = 0; i < l.hw; ++i) g[i] = g[i] * nz[i];
      sum_noise += sum_contiguous(g, l.hw);
    }
  }
  gbeta = T(sum_gy);
  ggamma = T(sum_gy_xhat);
  if (gstrength) *gstrength = T(sum_noise);
  if (!gx) return;
  const double k = double(gamma) * istd;
  for (int64_t n = 0; n < l.batch; ++n) {
    const int64_t off = (n * l.channels + c) * l.hw;
    plane_grad<A>(out + off, gy + off, g, l.hw, a);
    batch_norm_grad_input(g, x + off, gx + off, l.hw, m, istd, k, sum_gy, sum_gy_xhat, count, l.batch_stats);
  }
}

template <typename F>
void dispatch_activation(Activation act, F&& f) {
  switch (act) {
    case Activation::None: f(std::integral_constant<Activation, Activation::None>{}); break;
    case Activation::Relu: f(std::integral_constant<Activation, Activation::Relu>{}); break;
    case Activation::LeakyRelu: f(std::integral_constant<Activation, Activation::LeakyRelu>{}); break;
  }
}

}  // namespace

void CpuBackend::batch_norm_activation(const Tensor& x, const Tensor& mean, const Tensor& var, const Tensor& gamma,
                                       const Tensor& beta, double eps, const Tensor& noise, const Tensor& strength,
                                       Activation act, double slope, Tensor& y) {
  check_args("batch_norm_activation", x, noise, act, slope);
  const int64_t N = x.size(0), C = x.size(1), hw = x.size(2) * x.size(3);
  dispatch_float("batch_norm_activation", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T *xp = x.data<T>(), *mp = mean.data<T>(), *vp = var.data<T>();
    const T *gp = gamma.data<T>(), *bp = beta.data<T>();
    const T* np = noise.defined() ? noise.data<T>() : nullptr;
    const T* sp = noise.defined() ? strength.data<T>() : nullptr;
    T* yp = y.data<T>();
    const T a = T(slope);
    dispatch_activation(act, [&](auto A) {
#pragma omp parallel for schedule(static) if (N * C * hw > kParallelMin)
      for (int64_t nc = 0; nc < N * C; ++nc) {
        const int64_t n = nc / C, c = nc % C;
        const T scale = T(double(gp[c]) / std::sqrt(double(vp[c]) + eps));  // as batch_norm_apply
        plane_forward<decltype(A)::value>(xp + nc * hw, np ? np + n * hw : nullptr, yp + nc * hw, hw, mp[c], scale,
                                          bp[c], sp ? sp[c] : T(0), a);
      }
    });
  });
}

void CpuBackend::batch_norm_activation_backward(const Tensor& out, const Tensor& gy, const Tensor& x,
                                                const Tensor& mean, const Tensor& var, const Tensor& gamma,
                                                double eps, bool batch_stats, const Tensor& noise,
                                                Activation act, double slope, Tensor& gx, Tensor& ggamma,
                                                Tensor& gbeta, Tensor& gstrength) {
  check_args("batch_norm_activation_backward", x, noise, act, slope);
  if (gy.shape() != x.shape() || out.shape() != x.shape() || (gx.defined() && gx.shape() != x.shape()))
    throw Error("batch_norm_activation_backward: out " + shape_str(out.shape()) + ", gy " + shape_str(gy.shape()) +
                " and x " + shape_str(x.shape()) + " must have one shape");
  const int64_t N = x.size(0), C = x.size(1), hw = x.size(2) * x.size(3);
  const bool want_strength = gstrength.defined();
  if (want_strength && !noise.defined())
    throw Error("batch_norm_activation_backward: the noise strengths' gradient needs the noise");
  // sum_to reduces a one-channel tensor as one run in chunks, and copies a 1×C×1×1 one, not
  // plane by plane: those take the composition.
  if (want_strength && (C == 1 || N * hw == 1)) {
    Backend::batch_norm_activation_backward(out, gy, x, mean, var, gamma, eps, batch_stats, noise, act, slope, gx,
                                            ggamma, gbeta, gstrength);
    return;
  }
  const ChannelArgs l{N, C, hw, eps, batch_stats};
  dispatch_float("batch_norm_activation_backward", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T *op = out.data<T>(), *gyp = gy.data<T>(), *xp = x.data<T>();
    const T *mp = mean.data<T>(), *vp = var.data<T>(), *gp = gamma.data<T>();
    const T* np = noise.defined() ? noise.data<T>() : nullptr;
    T* gxp = gx.defined() ? gx.data<T>() : nullptr;
    T *ggp = ggamma.data<T>(), *gbp = gbeta.data<T>();
    T* gsp = want_strength ? gstrength.data<T>() : nullptr;
    const T a = T(slope);
    dispatch_activation(act, [&](auto A) {
#pragma omp parallel
      {
        std::vector<T> scratch(static_cast<size_t>(hw));  // one plane's g
#pragma omp for schedule(static)
        for (int64_t c = 0; c < C; ++c)
          channel_backward<decltype(A)::value>(c, l, op, gyp, xp, np, double(mp[c]), double(vp[c]), gp[c], a, gxp,
                                               ggp[c], gbp[c], gsp ? gsp + c : nullptr, scratch.data());
      }
    });
  });
}

}  // namespace pconv
