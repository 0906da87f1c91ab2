// The partial-convolution pieces around the cuDNN convolution (PAPER.md; DESIGN.md "Masks:
// groups"): masking the input per group, counting valid inputs per window, renormalising
// the output by window/count, and the same scale on the way back.
#include "cuda/kernel_util.cuh"

namespace pconv {

namespace {

// y[n, c0 + c, s] = x[n, c0 + c, s] · m[n, s] for the group's channels c in [0, cg).
template <typename T>
__global__ void mask_group_kernel(const T* x, const T* m, T* y, int64_t n_batch, int64_t channels,
                                  int64_t c0, int64_t cg, int64_t hw) {
  const int64_t total = n_batch * cg * hw;
  PCONV_GRID_STRIDE(i, total) {
    const int64_t s = i % hw, c = (i / hw) % cg, n = i / (hw * cg);
    const int64_t at = (n * channels + c0 + c) * hw + s;
    y[at] = x[at] * m[n * hw + s];
  }
}

// count[n, oh, ow] (+)= cg · Σ of m over the window; padding counts as hole.
template <typename T>
__global__ void count_group_kernel(const T* m, T* count, int64_t n_batch, int64_t h, int64_t w,
                                   int64_t ho, int64_t wo, int64_t kh, int64_t kw, int64_t stride,
                                   int64_t pad, T cg, bool accumulate) {
  const int64_t total = n_batch * ho * wo;
  PCONV_GRID_STRIDE(i, total) {
    const int64_t ow = i % wo, oh = (i / wo) % ho, n = i / (wo * ho);
    const int64_t h0 = oh * stride - pad, w0 = ow * stride - pad;
    const T* plane = m + n * h * w;
    T box = 0;
    for (int64_t a = max(h0, int64_t(0)); a < min(h0 + kh, h); ++a)
      for (int64_t b = max(w0, int64_t(0)); b < min(w0 + kw, w); ++b) box += plane[a * w + b];
    count[i] = (accumulate ? count[i] : T(0)) + cg * box;
  }
}

template <typename T>
__global__ void epilogue_kernel(T* y, const T* count, const T* bias, T window, T* new_mask,
                                int64_t n_batch, int64_t channels, int64_t hw) {
  const int64_t total = n_batch * channels * hw;
  PCONV_GRID_STRIDE(i, total) {
    const int64_t s = i % hw, k = (i / hw) % channels, n = i / (hw * channels);
    const T c = count[n * hw + s];
    const bool valid = c > T(0);
    y[i] = valid ? y[i] * (window / c) + (bias ? bias[k] : T(0)) : T(0);
    if (k == 0) new_mask[n * hw + s] = valid ? T(1) : T(0);
  }
}

template <typename T>
__global__ void grad_scale_kernel(const T* gy, const T* count, T window, T* g, int64_t n_batch,
                                  int64_t channels, int64_t hw) {
  const int64_t total = n_batch * channels * hw;
  PCONV_GRID_STRIDE(i, total) {
    const int64_t s = i % hw, n = i / (hw * channels);
    const T c = count[n * hw + s];
    g[i] = c > T(0) ? gy[i] * (window / c) : T(0);
  }
}

// The N×1×H×W plane shape every group mask must have for features N×C×H×W.
void check_mask_plane(const char* op, const Tensor& m, int64_t n, int64_t h, int64_t w) {
  if (m.dim() != 4 || m.size(0) != n || m.size(1) != 1 || m.size(2) != h || m.size(3) != w)
    throw Error(std::string(op) + ": mask group " + shape_str(m.shape()) + " is not [" +
                std::to_string(n) + ", 1, " + std::to_string(h) + ", " + std::to_string(w) + "]");
}

// Checks `t` is N×K×H×W with `count` N×1×H×W.
void check_per_pixel(const char* op, const Tensor& t, const char* name, const Tensor& count) {
  if (t.dim() != 4 || count.dim() != 4 || count.size(0) != t.size(0) || count.size(1) != 1 ||
      count.size(2) != t.size(2) || count.size(3) != t.size(3))
    throw Error(std::string(op) + ": " + name + " " + shape_str(t.shape()) + " and count " +
                shape_str(count.shape()) + " do not match");
}

}  // namespace

void CudaBackend::mask_apply(const Tensor& x, const Mask& mask, Tensor& y) {
  check_numel("mask_apply", x, "x", y, "y");
  if (x.dim() != 4) throw Error("mask_apply: x " + shapes_of(x) + " is not N×C×H×W");
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  int64_t covered = 0;
  for (const MaskGroup& g : mask) {
    check_mask_plane("mask_apply", g.mask, n, h, w);
    covered += g.channels;
  }
  if (covered != c)
    throw Error("mask_apply: mask groups cover " + std::to_string(covered) + " channels, x " +
                shapes_of(x) + " has " + std::to_string(c));
  // Elementwise, so y may be x.
  int64_t c0 = 0;
  for (const MaskGroup& g : mask) {
    const int64_t total = n * g.channels * h * w;
    if (total > 0) {
      cuda_dispatch_float("mask_apply", x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        mask_group_kernel<T><<<blocks_for(total), kThreads, 0, stream_>>>(
            x.data<T>(), g.mask.data<T>(), y.data<T>(), n, c, c0, g.channels, h * w);
      });
      CUDA_CHECK_LAUNCH("mask_apply x " + shapes_of(x) + " group of " +
                        std::to_string(g.channels) + " channels");
    }
    c0 += g.channels;
  }
}

void CudaBackend::pconv_count(const Mask& mask, int64_t kh, int64_t kw, const Conv2dParams& p,
                              Tensor& count) {
  if (mask.empty()) throw Error("pconv_count: empty mask");
  if (count.dim() != 4 || count.size(1) != 1)
    throw Error("pconv_count: count " + shapes_of(count) + " is not N×1×Ho×Wo");
  const Tensor& m0 = mask.front().mask;
  if (m0.dim() != 4) throw Error("pconv_count: mask group " + shapes_of(m0) + " is not N×1×H×W");
  const int64_t n = m0.size(0), h = m0.size(2), w = m0.size(3);
  const int64_t ho = count.size(2), wo = count.size(3);
  if (count.size(0) != n || ho != (h + 2 * p.pad - kh) / p.stride + 1 ||
      wo != (w + 2 * p.pad - kw) / p.stride + 1)
    throw Error("pconv_count: count " + shapes_of(count) + " does not fit mask " + shapes_of(m0) +
                " with a " + std::to_string(kh) + "x" + std::to_string(kw) + " kernel, stride " +
                std::to_string(p.stride) + ", pad " + std::to_string(p.pad));
  const int64_t total = n * ho * wo;
  if (total == 0) return;
  bool accumulate = false;
  for (const MaskGroup& g : mask) {
    check_mask_plane("pconv_count", g.mask, n, h, w);
    cuda_dispatch_float("pconv_count", count.dtype(), [&](auto tag) {
      using T = decltype(tag);
      count_group_kernel<T><<<blocks_for(total), kThreads, 0, stream_>>>(
          g.mask.data<T>(), count.data<T>(), n, h, w, ho, wo, kh, kw, p.stride, p.pad,
          T(g.channels), accumulate);
    });
    CUDA_CHECK_LAUNCH("pconv_count mask " + shapes_of(g.mask) + " -> " + shapes_of(count));
    accumulate = true;
  }
}

void CudaBackend::pconv_epilogue(Tensor& y, const Tensor& count, const Tensor& bias, double window,
                                 Tensor& new_mask) {
  check_per_pixel("pconv_epilogue", y, "y", count);
  check_numel("pconv_epilogue", count, "count", new_mask, "new_mask");
  if (bias.defined() && bias.numel() != y.size(1))
    throw Error("pconv_epilogue: bias " + shapes_of(bias) + " does not match y " + shapes_of(y));
  const int64_t n = y.size(0), k = y.size(1), hw = y.size(2) * y.size(3);
  if (k == 0) {  // no channel writes the mask: do it directly
    unary(UnaryOp::Step, count, new_mask, 0.0);
    return;
  }
  const int64_t total = n * k * hw;
  if (total == 0) return;
  cuda_dispatch_float("pconv_epilogue", y.dtype(), [&](auto tag) {
    using T = decltype(tag);
    epilogue_kernel<T><<<blocks_for(total), kThreads, 0, stream_>>>(
        y.data<T>(), count.data<T>(), bias.defined() ? bias.data<T>() : nullptr, T(window),
        new_mask.data<T>(), n, k, hw);
  });
  CUDA_CHECK_LAUNCH("pconv_epilogue y " + shapes_of(y));
}

void CudaBackend::pconv_grad_scale(const Tensor& gy, const Tensor& count, double window,
                                   Tensor& g) {
  check_per_pixel("pconv_grad_scale", gy, "gy", count);
  check_numel("pconv_grad_scale", gy, "gy", g, "g");
  const int64_t n = gy.size(0), k = gy.size(1), hw = gy.size(2) * gy.size(3);
  const int64_t total = n * k * hw;
  if (total == 0) return;
  cuda_dispatch_float("pconv_grad_scale", gy.dtype(), [&](auto tag) {
    using T = decltype(tag);
    grad_scale_kernel<T><<<blocks_for(total), kThreads, 0, stream_>>>(
        gy.data<T>(), count.data<T>(), T(window), g.data<T>(), n, k, hw);
  });
  CUDA_CHECK_LAUNCH("pconv_grad_scale gy " + shapes_of(gy));
}

}  // namespace pconv
