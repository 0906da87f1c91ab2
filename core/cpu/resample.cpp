// Nearest and bilinear ×2 upsampling and 2×2 max pooling over the last two dims of N×C×H×W tensors,
// each with its adjoint. One (n, c) plane per loop iteration.
#include "core/cpu/cpu_backend.h"

#include <vector>

namespace pconv {

namespace {

struct Planes {
  int64_t count, height, width;  // count = N·C planes of height × width
};

Planes planes_of(const char* op, const Tensor& t) {
  if (t.dim() != 4)
    throw Error(std::string(op) + ": expected an N×C×H×W tensor, got shape " + shape_str(t.shape()));
  return {t.size(0) * t.size(1), t.size(2), t.size(3)};
}

}  // namespace

// y[2i + a, 2j + b] = x[i, j] for a, b in {0, 1}.
void CpuBackend::upsample_nearest2x(const Tensor& x, Tensor& y) {
  const Planes p = planes_of("upsample_nearest2x", x);
  dispatch_float("upsample_nearest2x", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    const int64_t wo = 2 * p.width;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < p.count; ++k) {
      const T* src = xp + k * p.height * p.width;
      T* dst = yp + k * 4 * p.height * p.width;
      for (int64_t i = 0; i < p.height; ++i) {
        T* row = dst + 2 * i * wo;
        for (int64_t j = 0; j < p.width; ++j) row[2 * j] = row[2 * j + 1] = src[i * p.width + j];
        std::memcpy(row + wo, row, size_t(wo) * sizeof(T));
      }
    }
  });
}

// The adjoint: gx[i, j] = Σ of the 2×2 block of gy it was copied to.
void CpuBackend::upsample_nearest2x_backward(const Tensor& gy, Tensor& gx) {
  const Planes p = planes_of("upsample_nearest2x_backward", gx);
  dispatch_float("upsample_nearest2x_backward", gy.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* gyp = gy.data<T>();
    T* gxp = gx.data<T>();
    const int64_t wo = 2 * p.width;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < p.count; ++k) {
      const T* src = gyp + k * 4 * p.height * p.width;
      T* dst = gxp + k * p.height * p.width;
      for (int64_t i = 0; i < p.height; ++i) {
        const T* r0 = src + 2 * i * wo;
        const T* r1 = r0 + wo;
        for (int64_t j = 0; j < p.width; ++j)
          dst[i * p.width + j] = (r0[2 * j] + r0[2 * j + 1]) + (r1[2 * j] + r1[2 * j + 1]);
      }
    }
  });
}

namespace {

// One axis of bilinear ×2 (half-pixel centres, edges clamped): y[2i] = ¾x[i] + ¼x[i-1],
// y[2i+1] = ¾x[i] + ¼x[i+1], the neighbour clamped to 0..n-1.
template <typename T>
void bilinear_row(const T* x, int64_t n, T* y) {
  for (int64_t i = 0; i < n; ++i) {
    const T c = T(0.75) * x[i];
    y[2 * i] = c + T(0.25) * x[i > 0 ? i - 1 : 0];
    y[2 * i + 1] = c + T(0.25) * x[i + 1 < n ? i + 1 : n - 1];
  }
}

// Its adjoint, gathered: x[i] feeds y[2i], y[2i+1] (¾ each), y[2i-1] and y[2i+2] (¼ each), and
// at the ends the clamped neighbour is x[i] itself (y[0], y[2n-1]).
template <typename T>
void bilinear_row_adjoint(const T* g, int64_t n, T* gx) {
  for (int64_t i = 0; i < n; ++i)
    gx[i] = T(0.75) * (g[2 * i] + g[2 * i + 1]) +
            T(0.25) * (g[i > 0 ? 2 * i - 1 : 0] + g[i + 1 < n ? 2 * i + 2 : 2 * n - 1]);
}

// out = a·x + b·z over a row of w values (the vertical pass, row by row so it vectorises).
template <typename T>
void axpby(T a, const T* x, T b, const T* z, int64_t w, T* out) {
  for (int64_t j = 0; j < w; ++j) out[j] = a * x[j] + b * z[j];
}

}  // namespace

// Separable: each row across into a scratch plane of H × 2W, then the rows down into 2H × 2W.
void CpuBackend::upsample_bilinear2x(const Tensor& x, Tensor& y) {
  const Planes p = planes_of("upsample_bilinear2x", x);
  dispatch_float("upsample_bilinear2x", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    const int64_t h = p.height, wo = 2 * p.width;
#pragma omp parallel
    {
      std::vector<T> across(size_t(h * wo));
#pragma omp for schedule(static)
      for (int64_t k = 0; k < p.count; ++k) {
        const T* src = xp + k * h * p.width;
        T* dst = yp + k * 4 * h * p.width;
        for (int64_t i = 0; i < h; ++i) bilinear_row(src + i * p.width, p.width, across.data() + i * wo);
        for (int64_t i = 0; i < h; ++i) {
          const T* row = across.data() + i * wo;
          axpby(T(0.75), row, T(0.25), across.data() + (i > 0 ? i - 1 : 0) * wo, wo, dst + 2 * i * wo);
          axpby(T(0.75), row, T(0.25), across.data() + (i + 1 < h ? i + 1 : h - 1) * wo, wo, dst + (2 * i + 1) * wo);
        }
      }
    }
  });
}

// The adjoint in the reverse order: rows up into H × 2W, then each row's adjoint into H × W.
void CpuBackend::upsample_bilinear2x_backward(const Tensor& gy, Tensor& gx) {
  const Planes p = planes_of("upsample_bilinear2x_backward", gx);
  dispatch_float("upsample_bilinear2x_backward", gy.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* gyp = gy.data<T>();
    T* gxp = gx.data<T>();
    const int64_t h = p.height, wo = 2 * p.width;
#pragma omp parallel
    {
      std::vector<T> down(size_t(h * wo));
#pragma omp for schedule(static)
      for (int64_t k = 0; k < p.count; ++k) {
        const T* g = gyp + k * 4 * h * p.width;
        T* dst = gxp + k * h * p.width;
        for (int64_t i = 0; i < h; ++i) {
          T* row = down.data() + i * wo;
          const T* prev = g + (i > 0 ? 2 * i - 1 : 0) * wo;
          const T* next = g + (i + 1 < h ? 2 * i + 2 : 2 * h - 1) * wo;
          const T* r0 = g + 2 * i * wo;
          const T* r1 = r0 + wo;
          for (int64_t j = 0; j < wo; ++j) row[j] = T(0.75) * (r0[j] + r1[j]) + T(0.25) * (prev[j] + next[j]);
        }
        for (int64_t i = 0; i < h; ++i) bilinear_row_adjoint(down.data() + i * wo, p.width, dst + i * p.width);
      }
    }
  });
}

namespace {
// The larger of a and b, NaN if either is (NaN propagates, as PyTorch). Ties keep a.
template <typename T>
T max_nan(T a, T b) {
  return (b > a || b != b) ? b : a;
}
// Whether v is the window's maximum m (a NaN matches a NaN maximum).
template <typename T>
bool is_max(T v, T m) {
  return (v == m) | ((v != v) & (m != m));  // no short circuit: vectorises
}
}  // namespace

// Windows at rows/cols 2i, 2i+1; an odd last row or column is dropped (floor, as PyTorch).
void CpuBackend::max_pool2x2(const Tensor& x, Tensor& y) {
  const Planes p = planes_of("max_pool2x2", x);
  const int64_t ho = p.height / 2, wo = p.width / 2;
  dispatch_float("max_pool2x2", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < p.count; ++k) {
      const T* src = xp + k * p.height * p.width;
      T* dst = yp + k * ho * wo;
      for (int64_t i = 0; i < ho; ++i) {
        const T* r0 = src + 2 * i * p.width;
        const T* r1 = r0 + p.width;
        for (int64_t j = 0; j < wo; ++j)
          dst[i * wo + j] = max_nan(max_nan(r0[2 * j], r0[2 * j + 1]), max_nan(r1[2 * j], r1[2 * j + 1]));
      }
    }
  });
}

void CpuBackend::max_pool2x2_backward(const Tensor& x, const Tensor& gy, Tensor& gx) {
  const Planes p = planes_of("max_pool2x2_backward", x);
  const int64_t ho = p.height / 2, wo = p.width / 2;
  dispatch_float("max_pool2x2_backward", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    const T* gyp = gy.data<T>();
    T* gxp = gx.data<T>();
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < p.count; ++k) {
      const T* src = xp + k * p.height * p.width;
      const T* g = gyp + k * ho * wo;
      T* dst = gxp + k * p.height * p.width;
      // Every element of a window is written (the gradient or 0); only the odd last row or
      // column, outside every window, is zeroed separately.
      for (int64_t i = 0; i < ho; ++i) {
        const T* r0 = src + 2 * i * p.width;
        const T* r1 = r0 + p.width;
        T* d0 = dst + 2 * i * p.width;
        T* d1 = d0 + p.width;
        for (int64_t j = 0; j < wo; ++j) {
          // The first maximum in row-major order takes the gradient, the same element on
          // every device; selects rather than branches, which data-dependent ties mispredict.
          const T a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
          const T m = max_nan(max_nan(a, b), max_nan(c, d));
          const bool ha = is_max(a, m), hb = !ha & is_max(b, m), hc = !(ha | hb) & is_max(c, m);
          const T gv = g[i * wo + j];
          d0[2 * j] = ha ? gv : T(0);
          d0[2 * j + 1] = hb ? gv : T(0);
          d1[2 * j] = hc ? gv : T(0);
          d1[2 * j + 1] = !(ha | hb | hc) ? gv : T(0);
        }
        if (p.width % 2) d0[p.width - 1] = d1[p.width - 1] = T(0);
      }
      if (p.height % 2) std::memset(dst + (p.height - 1) * p.width, 0, size_t(p.width) * sizeof(T));
    }
  });
}

}  // namespace pconv
