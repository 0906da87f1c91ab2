// Batch norm over N and the spatial dims, per channel: statistics, the affine apply and the
// backward in both modes. Sums and per-channel factors are kept in double whatever the
// dtype, so f32 results sit within rounding of the exact values.
#include "cuda/reduce.cuh"

namespace pconv {

namespace {

// Channel c's element r of x (N×C×HW), r = n·HW + s.
struct ChannelIndex {
  int64_t channels, hw;
  __device__ int64_t operator()(int64_t c, int64_t r) const {
    const int64_t n = r / hw, s = r - n * hw;
    return (n * channels + c) * hw + s;
  }
};

template <typename T>
struct ValueTerm {
  const T* x;
  ChannelIndex at;
  __device__ Sums<1> operator()(int64_t c, int64_t r) const { return Sums<1>{{double(x[at(c, r)])}}; }
};

template <typename T>
struct StoreMean {
  T* mean;
  double* mean_exact;
  double count;
  __device__ void operator()(int64_t c, const Sums<1>& s) const {
    mean_exact[c] = s.v[0] / count;
    mean[c] = T(mean_exact[c]);
  }
};

// Two passes (mean, then squared deviations) rather than E[x²] - E[x]²: no cancellation.
template <typename T>
struct SquaredDeviationTerm {
  const T* x;
  const double* mean;
  ChannelIndex at;
  __device__ Sums<1> operator()(int64_t c, int64_t r) const {
    const double d = double(x[at(c, r)]) - mean[c];
    return Sums<1>{{d * d}};
  }
};

template <typename T>
struct StoreVar {
  T* var;
  double count;
  __device__ void operator()(int64_t c, const Sums<1>& s) const { var[c] = T(s.v[0] / count); }
};

// scale = gamma / sqrt(var + eps) and 1 / sqrt(var + eps), per channel.
template <typename T>
__global__ void channel_factors_kernel(const T* var, const T* gamma, double eps, int64_t channels,
                                       double* scale, double* inv_std) {
  PCONV_GRID_STRIDE(c, channels) {
    const double is = 1.0 / sqrt(double(var[c]) + eps);
    inv_std[c] = is;
    scale[c] = (gamma ? double(gamma[c]) : 1.0) * is;
  }
}

// y = (x - mean) · scale + beta: the mean comes off first, so a large |mean| costs nothing.
template <typename T>
__global__ void apply_kernel(const T* x, const T* mean, const double* scale, const T* beta, T* y,
                             int64_t total, int64_t channels, int64_t hw) {
  PCONV_GRID_STRIDE(i, total) {
    const int64_t c = (i / hw) % channels;
    y[i] = T((double(x[i]) - double(mean[c])) * scale[c] + (beta ? double(beta[c]) : 0.0));
  }
}

// Per channel: Σ gy and Σ gy · x̂ with x̂ = (x - mean) / sqrt(var + eps).
template <typename T>
struct GradTerms {
  const T* gy;
  const T* x;
  const T* mean;
  const double* inv_std;
  ChannelIndex at;
  __device__ Sums<2> operator()(int64_t c, int64_t r) const {
    const int64_t i = at(c, r);
    const double g = double(gy[i]);
    const double xhat = (double(x[i]) - double(mean[c])) * inv_std[c];
    return Sums<2>{{g, g * xhat}};
  }
};

template <typename T>
struct StoreGrads {
  T* ggamma;
  T* gbeta;
  double* sums;  // [c][2]: Σ gy, Σ gy·x̂ for the gx kernel
  __device__ void operator()(int64_t c, const Sums<2>& s) const {
    sums[2 * c] = s.v[0];
    sums[2 * c + 1] = s.v[1];
    if (gbeta) gbeta[c] = T(s.v[0]);
    if (ggamma) ggamma[c] = T(s.v[1]);
  }
};

// Batch statistics: gx = γ·is·(gy - Σgy/M - x̂·Σ(gy·x̂)/M), the mean and variance depending on
// x; fixed statistics: gx = γ·is·gy.
template <typename T>
__global__ void input_grad_kernel(const T* gy, const T* x, const T* mean, const T* gamma,
                                  const double* inv_std, const double* sums, double count,
                                  bool batch_stats, T* gx, int64_t total, int64_t channels,
                                  int64_t hw) {
  PCONV_GRID_STRIDE(i, total) {
    const int64_t c = (i / hw) % channels;
    const double is = inv_std[c];
    const double g = (gamma ? double(gamma[c]) : 1.0) * is;
    double d = double(gy[i]);
    if (batch_stats) {
      const double xhat = (double(x[i]) - double(mean[c])) * is;
      d -= (sums[2 * c] + xhat * sums[2 * c + 1]) / count;
    }
    gx[i] = T(g * d);
  }
}

struct BnShape {
  int64_t n, c, hw;
};
BnShape bn_shape(const char* op, const Tensor& x, const Tensor& stat) {
  if (x.dim() < 2) throw Error(std::string(op) + ": x " + shape_str(x.shape()) + " has no channel dim");
  BnShape s{x.size(0), x.size(1), 1};
  for (int64_t d = 2; d < x.dim(); ++d) s.hw *= x.size(d);
  if (stat.numel() != s.c)
    throw Error(std::string(op) + ": statistics " + shape_str(stat.shape()) + " do not match the " +
                std::to_string(s.c) + " channels of x " + shape_str(x.shape()));
  return s;
}

template <typename T>
const T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

}  // namespace

void CudaBackend::batch_norm_stats(const Tensor& x, Tensor& mean, Tensor& var) {
  const BnShape s = bn_shape("batch_norm_stats", x, mean);
  check_numel("batch_norm_stats", mean, "mean", var, "var");
  const int64_t m = s.n * s.hw;
  const std::string what = "batch_norm_stats x " + shapes_of(x);
  CudaBuffer mean_exact(size_t(s.c) * sizeof(double));
  cuda_dispatch_float("batch_norm_stats", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const ChannelIndex at{s.c, s.hw};
    segmented_sum<1>(ValueTerm<T>{x.data<T>(), at},
                     StoreMean<T>{mean.data<T>(), mean_exact.as<double>(), double(m)}, s.c, m,
                     stream_, what);
    segmented_sum<1>(SquaredDeviationTerm<T>{x.data<T>(), mean_exact.as<double>(), at},
                     StoreVar<T>{var.data<T>(), double(m)}, s.c, m, stream_, what);
  });
}

void CudaBackend::batch_norm_apply(const Tensor& x, const Tensor& mean, const Tensor& var,
                                   const Tensor& gamma, const Tensor& beta, double eps, Tensor& y) {
  const BnShape s = bn_shape("batch_norm_apply", x, mean);
  check_numel("batch_norm_apply", x, "x", y, "y");
  CudaBuffer factors(size_t(2 * s.c) * sizeof(double));
  double* scale = factors.as<double>();
  const int64_t total = x.numel();
  cuda_dispatch_float("batch_norm_apply", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    channel_factors_kernel<T><<<blocks_for(s.c), kThreads, 0, stream_>>>(
        var.data<T>(), data_or_null<T>(gamma), eps, s.c, scale, scale + s.c);
    if (total > 0)
      apply_kernel<T><<<blocks_for(total), kThreads, 0, stream_>>>(
          x.data<T>(), mean.data<T>(), scale, data_or_null<T>(beta), y.data<T>(), total, s.c, s.hw);
  });
  CUDA_CHECK_LAUNCH("batch_norm_apply x " + shapes_of(x));
}

void CudaBackend::batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& mean,
                                      const Tensor& var, const Tensor& gamma, double eps,
                                      bool batch_stats, Tensor& gx, Tensor& ggamma,
                                      Tensor& gbeta) {
  const BnShape s = bn_shape("batch_norm_backward", x, mean);
  check_numel("batch_norm_backward", x, "x", gy, "gy");
  if (gx.defined()) check_numel("batch_norm_backward", x, "x", gx, "gx");
  const int64_t m = s.n * s.hw, total = x.numel();
  const std::string what = "batch_norm_backward x " + shapes_of(x);
  CudaBuffer factors(size_t(2 * s.c) * sizeof(double));
  CudaBuffer sums(size_t(2 * s.c) * sizeof(double));
  double* inv_std = factors.as<double>() + s.c;
  cuda_dispatch_float("batch_norm_backward", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    channel_factors_kernel<T><<<blocks_for(s.c), kThreads, 0, stream_>>>(
        var.data<T>(), nullptr, eps, s.c, factors.as<double>(), inv_std);
    CUDA_CHECK_LAUNCH(what);
    segmented_sum<2>(GradTerms<T>{gy.data<T>(), x.data<T>(), mean.data<T>(), inv_std,
                                  ChannelIndex{s.c, s.hw}},
                     StoreGrads<T>{ggamma.defined() ? ggamma.data<T>() : nullptr,
                                   gbeta.defined() ? gbeta.data<T>() : nullptr, sums.as<double>()},
                     s.c, m, stream_, what);
    if (gx.defined() && total > 0) {
      input_grad_kernel<T><<<blocks_for(total), kThreads, 0, stream_>>>(
          gy.data<T>(), x.data<T>(), mean.data<T>(), data_or_null<T>(gamma), inv_std,
          sums.as<double>(), double(m), batch_stats, gx.data<T>(), total, s.c, s.hw);
      CUDA_CHECK_LAUNCH(what);
    }
  });
}

}  // namespace pconv
