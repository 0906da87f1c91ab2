// Batch normalisation over N and the spatial dims, one channel per thread.
// x is N×C×(rest): statistics are taken over the N·rest values of each channel.
#include <cmath>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/batchnorm_planes.h"
#include "core/cpu/lane_sums.h"

namespace pconv {

namespace {

struct ChannelLayout {
  int64_t batch, channels, inner;  // x = batch × channels × inner
  int64_t count() const { return batch * inner; }
};

ChannelLayout layout_of(const char* op, const Tensor& x) {
  if (x.dim() < 2)
    throw Error(std::string(op) + ": x must have rank >= 2 (N×C×...), got shape " +
                shape_str(x.shape()));
  const int64_t n = x.size(0), c = x.size(1);
  return {n, c, c == 0 || n == 0 ? 0 : x.numel() / (n * c)};
}

}  // namespace

template <typename T>
[[gnu::noinline]] void batch_norm_grad_sums(const T* g, const T* x, int64_t n, double m, double istd, double& sum_gy,
                                            double& sum_gy_xhat) {
  const Sums s = lane_sums(n, [&](int64_t i) { return double(g[i]); },
                           [&](int64_t i) { return double(g[i]) * (double(x[i]) - m); });
  sum_gy += s.a;
  sum_gy_xhat += s.b * istd;
}

template <typename T>
[[gnu::noinline]] void batch_norm_grad_input(const T* g, const T* x, T* gx, int64_t n, double m, double istd,
                                             double k, double sum_gy, double sum_gy_xhat, double count,
                                             bool batch_stats) {
  for (int64_t i = 0; i < n; ++i) {
    const double gi = double(g[i]);
    if (batch_stats) {
      const double xhat = (double(x[i]) - m) * istd;
      gx[i] = T(k * (gi - (sum_gy + xhat * sum_gy_xhat) / count));
    } else {
      gx[i] = T(k * gi);
    }
  }
}

template void batch_norm_grad_sums<float>(const float*, const float*, int64_t, double, double, double&, double&);
template void batch_norm_grad_sums<double>(const double*, const double*, int64_t, double, double, double&, double&);
template void batch_norm_grad_input<float>(const float*, const float*, float*, int64_t, double, double, double,
                                           double, double, double, bool);
template void batch_norm_grad_input<double>(const double*, const double*, double*, int64_t, double, double, double,
                                            double, double, double, bool);

void CpuBackend::batch_norm_stats(const Tensor& x, Tensor& mean, Tensor& var) {
  const ChannelLayout l = layout_of("batch_norm_stats", x);
  dispatch_float("batch_norm_stats", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    T* mp = mean.data<T>();
    T* vp = var.data<T>();
    const double count = double(l.count());
    // Two passes in double: the mean first, then Σ(x - mean)², which avoids the
    // cancellation of E[x²] - E[x]² when |mean| >> std.
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < l.channels; ++c) {
      double sum = 0;
      for (int64_t n = 0; n < l.batch; ++n) {
        const T* run = xp + (n * l.channels + c) * l.inner;
        sum += lane_sum(l.inner, [&](int64_t i) { return double(run[i]); });
      }
      const double m = sum / count;
      double ss = 0;
      for (int64_t n = 0; n < l.batch; ++n) {
        const T* run = xp + (n * l.channels + c) * l.inner;
        ss += lane_sum(l.inner, [&](int64_t i) {
          const double d = double(run[i]) - m;
          return d * d;
        });
      }
      mp[c] = T(m);
      vp[c] = T(ss / count);  // biased, as the normalisation uses
    }
  });
}

// y = (x - mean) · scale + beta with scale = gamma / sqrt(var + eps). Subtracting the mean
// first (rather than folding it into the shift) keeps f32 exact when |mean| >> std.
void CpuBackend::batch_norm_apply(const Tensor& x, const Tensor& mean, const Tensor& var,
                                  const Tensor& gamma, const Tensor& beta, double eps, Tensor& y) {
  const ChannelLayout l = layout_of("batch_norm_apply", x);
  dispatch_float("batch_norm_apply", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    const T *mp = mean.data<T>(), *vp = var.data<T>();
    const T *gp = gamma.data<T>(), *bp = beta.data<T>();
    T* yp = y.data<T>();
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < l.channels; ++c) {
      const T scale = T(double(gp[c]) / std::sqrt(double(vp[c]) + eps));
      const T m = mp[c], b = bp[c];
      for (int64_t n = 0; n < l.batch; ++n) {
        const int64_t off = (n * l.channels + c) * l.inner;
        for (int64_t i = 0; i < l.inner; ++i) yp[off + i] = (xp[off + i] - m) * scale + b;
      }
    }
  });
}

// With x̂ = (x - mean)·istd, istd = 1/sqrt(var + eps), M values per channel:
//   gbeta = Σ gy,  ggamma = Σ gy·x̂
//   batch statistics (mean and var depend on x):
//     gx = gamma·istd/M · (M·gy - gbeta - x̂·ggamma)
//   fixed statistics (running averages, constants):
//     gx = gamma·istd · gy
void CpuBackend::batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& mean,
                                     const Tensor& var, const Tensor& gamma, double eps,
                                     bool batch_stats, Tensor& gx, Tensor& ggamma, Tensor& gbeta) {
  const ChannelLayout l = layout_of("batch_norm_backward", x);
  const bool want_gx = gx.defined();
  dispatch_float("batch_norm_backward", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T *xp = x.data<T>(), *gyp = gy.data<T>();
    const T *mp = mean.data<T>(), *vp = var.data<T>(), *gp = gamma.data<T>();
    T* gxp = want_gx ? gx.data<T>() : nullptr;
    T *ggp = ggamma.data<T>(), *gbp = gbeta.data<T>();
    const double count = double(l.count());
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < l.channels; ++c) {
      const double m = double(mp[c]);
      const double istd = 1.0 / std::sqrt(double(vp[c]) + eps);
      double sum_gy = 0, sum_gy_xhat = 0;
      for (int64_t n = 0; n < l.batch; ++n) {
        const int64_t off = (n * l.channels + c) * l.inner;
        batch_norm_grad_sums(gyp + off, xp + off, l.inner, m, istd, sum_gy, sum_gy_xhat);
      }
      gbp[c] = T(sum_gy);
      ggp[c] = T(sum_gy_xhat);
      if (!want_gx) continue;
      const double k = double(gp[c]) * istd;
      for (int64_t n = 0; n < l.batch; ++n) {
        const int64_t off = (n * l.channels + c) * l.inner;
        batch_norm_grad_input(gyp + off, xp + off, gxp + off, l.inner, m, istd, k, sum_gy, sum_gy_xhat, count,
                              batch_stats);
      }
    }
  });
}

}  // namespace pconv
