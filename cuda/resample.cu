// Nearest ×2 upsampling and 2×2 max pooling, each with its adjoint. Tensors are N×C×H×W;
// the planes (N·C of them) are independent.
#include "cuda/kernel_util.cuh"

namespace pconv {

namespace {

template <typename T>
__global__ void upsample_kernel(const T* x, T* y, int64_t planes, int64_t h, int64_t w) {
  const int64_t wo = 2 * w, total = planes * 4 * h * w;
  PCONV_GRID_STRIDE(i, total) {
    const int64_t ox = i % wo, oy = (i / wo) % (2 * h), p = i / (wo * 2 * h);
    y[i] = x[(p * h + oy / 2) * w + ox / 2];
  }
}

// gx[h, w] = the sum of the 2×2 block of gy it was copied to.
template <typename T>
__global__ void upsample_backward_kernel(const T* gy, T* gx, int64_t planes, int64_t h, int64_t w) {
  const int64_t total = planes * h * w, wo = 2 * w;
  PCONV_GRID_STRIDE(i, total) {
    const int64_t xw = i % w, xh = (i / w) % h, p = i / (w * h);
    const T* row = gy + (p * 2 * h + 2 * xh) * wo + 2 * xw;
    gx[i] = row[0] + row[1] + row[wo] + row[wo + 1];
  }
}

// Index within x's plane of the window's first maximum (row-major order; later equal
// values do not replace it); a NaN wins and propagates, as on the CPU and in PyTorch.
template <typename T>
__device__ int64_t window_argmax(const T* plane, int64_t w, int64_t oy, int64_t ox) {
  const int64_t top = 2 * oy * w + 2 * ox;
  const int64_t cand[4] = {top, top + 1, top + w, top + w + 1};
  int64_t best = cand[0];
  T best_value = plane[best];
  for (int k = 1; k < 4; ++k) {
    const T v = plane[cand[k]];
    if (v > best_value || (v != v && best_value == best_value)) {
      best = cand[k];
      best_value = v;
    }
  }
  return best;
}

template <typename T>
__global__ void max_pool_kernel(const T* x, T* y, int64_t planes, int64_t h, int64_t w, int64_t ho,
                                int64_t wo) {
  const int64_t total = planes * ho * wo;
  PCONV_GRID_STRIDE(i, total) {
    const int64_t ox = i % wo, oy = (i / wo) % ho, p = i / (wo * ho);
    const T* plane = x + p * h * w;
    y[i] = plane[window_argmax(plane, w, oy, ox)];
  }
}

// Writes the whole window (gy at the argmax, 0 elsewhere), so gx needs no clearing unless
// an odd H or W leaves a row or column outside every window.
template <typename T>
__global__ void max_pool_backward_kernel(const T* x, const T* gy, T* gx, int64_t planes, int64_t h,
                                         int64_t w, int64_t ho, int64_t wo) {
  const int64_t total = planes * ho * wo;
  PCONV_GRID_STRIDE(i, total) {
    const int64_t ox = i % wo, oy = (i / wo) % ho, p = i / (wo * ho);
    const int64_t best = window_argmax(x + p * h * w, w, oy, ox);
    T* plane = gx + p * h * w;
    const int64_t top = 2 * oy * w + 2 * ox;
    plane[top] = top == best ? gy[i] : T(0);
    plane[top + 1] = top + 1 == best ? gy[i] : T(0);
    plane[top + w] = top + w == best ? gy[i] : T(0);
    plane[top + w + 1] = top + w + 1 == best ? gy[i] : T(0);
  }
}

void check_4d(const char* op, const char* name, const Tensor& t) {
  if (t.dim() != 4)
    throw Error(std::string(op) + ": " + name + " " + shape_str(t.shape()) + " is not N×C×H×W");
}

// `big` must be `small` with H and W doubled (upsample) or halved, rounding down (pool).
void check_pair(const char* op, const Tensor& small, const char* sn, const Tensor& big,
                const char* bn, bool exact) {
  check_4d(op, sn, small);
  check_4d(op, bn, big);
  const bool ok = small.size(0) == big.size(0) && small.size(1) == big.size(1) &&
                  (exact ? big.size(2) == 2 * small.size(2) && big.size(3) == 2 * small.size(3)
                         : big.size(2) / 2 == small.size(2) && big.size(3) / 2 == small.size(3));
  if (!ok)
    throw Error(std::string(op) + ": " + sn + " " + shape_str(small.shape()) + " and " + bn + " " +
                shape_str(big.shape()) + " do not differ by a factor of 2 in H and W");
}

}  // namespace

void CudaBackend::upsample_nearest2x(const Tensor& x, Tensor& y) {
  check_pair("upsample_nearest2x", x, "x", y, "y", true);
  const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
  if (y.numel() == 0) return;
  cuda_dispatch_float("upsample_nearest2x", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    upsample_kernel<T><<<blocks_for(y.numel()), kThreads, 0, stream_>>>(x.data<T>(), y.data<T>(),
                                                                        planes, h, w);
  });
  CUDA_CHECK_LAUNCH("upsample_nearest2x x " + shapes_of(x));
}

void CudaBackend::upsample_nearest2x_backward(const Tensor& gy, Tensor& gx) {
  check_pair("upsample_nearest2x_backward", gx, "gx", gy, "gy", true);
  const int64_t planes = gx.size(0) * gx.size(1), h = gx.size(2), w = gx.size(3);
  if (gx.numel() == 0) return;
  cuda_dispatch_float("upsample_nearest2x_backward", gy.dtype(), [&](auto tag) {
    using T = decltype(tag);
    upsample_backward_kernel<T><<<blocks_for(gx.numel()), kThreads, 0, stream_>>>(
        gy.data<T>(), gx.data<T>(), planes, h, w);
  });
  CUDA_CHECK_LAUNCH("upsample_nearest2x_backward gy " + shapes_of(gy));
}

void CudaBackend::max_pool2x2(const Tensor& x, Tensor& y) {
  check_pair("max_pool2x2", y, "y", x, "x", false);
  const int64_t planes = x.size(0) * x.size(1);
  if (y.numel() == 0) return;
  cuda_dispatch_float("max_pool2x2", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    max_pool_kernel<T><<<blocks_for(y.numel()), kThreads, 0, stream_>>>(
        x.data<T>(), y.data<T>(), planes, x.size(2), x.size(3), y.size(2), y.size(3));
  });
  CUDA_CHECK_LAUNCH("max_pool2x2 x " + shapes_of(x));
}

void CudaBackend::max_pool2x2_backward(const Tensor& x, const Tensor& gy, Tensor& gx) {
  check_pair("max_pool2x2_backward", gy, "gy", x, "x", false);
  check_numel("max_pool2x2_backward", x, "x", gx, "gx");
  const int64_t planes = x.size(0) * x.size(1);
  if (x.numel() == 0) return;
  if (x.size(2) % 2 || x.size(3) % 2)
    CUDA_CHECK(cudaMemsetAsync(gx.raw_data(), 0, gx.nbytes(), stream_));
  if (gy.numel() == 0) return;
  cuda_dispatch_float("max_pool2x2_backward", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    max_pool_backward_kernel<T><<<blocks_for(gy.numel()), kThreads, 0, stream_>>>(
        x.data<T>(), gy.data<T>(), gx.data<T>(), planes, x.size(2), x.size(3), gy.size(2),
        gy.size(3));
  });
  CUDA_CHECK_LAUNCH("max_pool2x2_backward x " + shapes_of(x));
}

}  // namespace pconv
