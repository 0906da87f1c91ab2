// The partial-convolution pieces around the plain convolution (PAPER.md "Partial
// convolution", DESIGN.md "Masks: groups"): masking the input, counting valid entries per
// window, and the ratio/bias/hole epilogue with its gradient scale.
#include <algorithm>

#include "core/cpu/cpu_backend.h"

namespace pconv {

namespace {

// Checks one group's mask against the features it covers and returns its planes' pointer.
template <typename T>
const T* group_mask(const char* op, const MaskGroup& g, int64_t n, int64_t h, int64_t w) {
  const Tensor& m = g.mask;
  if (m.dim() != 4 || m.size(0) != n || m.size(1) != 1 || m.size(2) != h || m.size(3) != w)
    throw Error(std::string(op) + ": mask group has shape " + shape_str(m.shape()) + ", expected [" +
                std::to_string(n) + ", 1, " + std::to_string(h) + ", " + std::to_string(w) + "]");
  return m.data<T>();
}

}  // namespace

// y[n, c] = x[n, c] ⊙ m_g[n] for the group g that holds channel c. Elementwise, so y may be x.
void CpuBackend::mask_apply(const Tensor& x, const Mask& mask, Tensor& y) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), hw = H * W;
  dispatch_float("mask_apply", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    std::vector<const T*> plane_mask(size_t(C), nullptr);  // channel → its group's mask
    int64_t c0 = 0;
    for (const MaskGroup& g : mask) {
      const T* m = group_mask<T>("mask_apply", g, N, H, W);
      for (int64_t c = c0; c < std::min(C, c0 + g.channels); ++c) plane_mask[size_t(c)] = m;
      c0 += g.channels;
    }
    if (c0 != C)
      throw Error("mask_apply: mask groups cover " + std::to_string(c0) + " channels, input has " +
                  std::to_string(C));
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
#pragma omp parallel for schedule(static) if (N * C * hw > 65536)
    for (int64_t nc = 0; nc < N * C; ++nc) {
      const int64_t n = nc / C, c = nc % C;
      const T* m = plane_mask[size_t(c)] + n * hw;
      const T* src = xp + nc * hw;
      T* dst = yp + nc * hw;
      for (int64_t i = 0; i < hw; ++i) dst[i] = src[i] * m[i];
    }
  });
}

// count[n, oh, ow] = Σ_g C_g · Σ_{window} m_g: the paper's sum(M) over all input channels and
// taps. Out-of-image taps are padding, which counts as hole (adds nothing). The box sum runs
// on each group's single-channel mask, never as a C_out×C_in×k×k convolution.
void CpuBackend::pconv_count(const Mask& mask, int64_t kh, int64_t kw, const Conv2dParams& p,
                             Tensor& count) {
  if (mask.empty()) throw Error("pconv_count: the mask has no groups");
  const int64_t N = count.size(0), Ho = count.size(2), Wo = count.size(3);
  const int64_t H = mask[0].mask.size(2), W = mask[0].mask.size(3);
  dispatch_float("pconv_count", count.dtype(), [&](auto tag) {
    using T = decltype(tag);
    std::vector<const T*> masks;
    for (const MaskGroup& g : mask) masks.push_back(group_mask<T>("pconv_count", g, N, H, W));
    T* out = count.data<T>();
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < N * Ho; ++row) {
      const int64_t n = row / Ho, oh = row % Ho;
      const int64_t i0 = std::max<int64_t>(0, oh * p.stride - p.pad);
      const int64_t i1 = std::min(H, oh * p.stride - p.pad + kh);
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const int64_t j0 = std::max<int64_t>(0, ow * p.stride - p.pad);
        const int64_t j1 = std::min(W, ow * p.stride - p.pad + kw);
        T total = 0;
        for (size_t gi = 0; gi < masks.size(); ++gi) {
          const T* m = masks[gi] + n * H * W;
          T box = 0;
          for (int64_t i = i0; i < i1; ++i)
            for (int64_t j = j0; j < j1; ++j) box += m[i * W + j];
          total += T(mask[gi].channels) * box;
        }
        out[row * Wo + ow] = total;
      }
    }
  });
}

// y = y · window/count + bias where count > 0, else exactly 0 (bias too); new_mask = [count > 0].
void CpuBackend::pconv_epilogue(Tensor& y, const Tensor& count, const Tensor& bias, double window,
                                Tensor& new_mask) {
  const int64_t N = y.size(0), K = y.size(1), hw = y.size(2) * y.size(3);
  dispatch_float("pconv_epilogue", y.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* yp = y.data<T>();
    const T* cp = count.data<T>();
    const T* bp = bias.defined() ? bias.data<T>() : nullptr;
    T* mp = new_mask.data<T>();
    for (int64_t i = 0; i < N * hw; ++i) mp[i] = cp[i] > 0 ? T(1) : T(0);
#pragma omp parallel for schedule(static) if (N * K * hw > 65536)
    for (int64_t nk = 0; nk < N * K; ++nk) {
      const int64_t n = nk / K, k = nk % K;
      const T b = bp ? bp[k] : T(0);
      const T* cn = cp + n * hw;
      T* row = yp + nk * hw;
      for (int64_t i = 0; i < hw; ++i) row[i] = cn[i] > 0 ? row[i] * (T(window) / cn[i]) + b : T(0);
    }
  });
}

// g = gy · window/count where count > 0, else 0: the gradient that reaches the convolution.
void CpuBackend::pconv_grad_scale(const Tensor& gy, const Tensor& count, double window, Tensor& g) {
  const int64_t N = gy.size(0), K = gy.size(1), hw = gy.size(2) * gy.size(3);
  dispatch_float("pconv_grad_scale", gy.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* gp = gy.data<T>();
    const T* cp = count.data<T>();
    T* out = g.data<T>();
#pragma omp parallel for schedule(static) if (N * K * hw > 65536)
    for (int64_t nk = 0; nk < N * K; ++nk) {
      const T* cn = cp + (nk / K) * hw;
      const T* src = gp + nk * hw;
      T* dst = out + nk * hw;
      for (int64_t i = 0; i < hw; ++i) dst[i] = cn[i] > 0 ? src[i] * (T(window) / cn[i]) : T(0);
    }
  });
}

}  // namespace pconv
