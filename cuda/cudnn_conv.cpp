// Convolution through cuDNN: every cuDNN call of pconv is in this file (cuDNN's API churns;
// the legacy convolution API used here is deprecated in cuDNN 9 but complete). Descriptors
// are RAII; the algorithm for each (pass, shapes, dtype) is chosen once with cuDNN's
// heuristics and cached; workspaces come from the caching allocator. f32 uses FMA math
// (no TF32) unless PCONV_TF32=1, so GPU and CPU agree to about 1e-6 relative.
#include <cudnn.h>

#include <array>
#include <climits>
#include <map>
#include <mutex>

#include "cuda/allocator.h"
#include "cuda/check.h"
#include "cuda/cuda_backend.h"

namespace pconv {

cudnnContext* create_cudnn_handle(cudaStream_t stream) {
  cudnnHandle_t h = nullptr;
  CUDNN_CHECK(cudnnCreate(&h));
  CUDNN_CHECK(cudnnSetStream(h, stream));
  return h;
}

void destroy_cudnn_handle(cudnnContext* h) noexcept {
  if (h) cudnnDestroy(h);
}

namespace {

constexpr size_t kMaxWorkspace = size_t(1) << 30;

// x N×C×H×W, w K×C×kh×kw, y N×K×Ho×Wo: the geometry all three passes share.
struct ConvShape {
  int n, c, h, w, k, kh, kw, ho, wo, stride, pad;
};

int to_int(int64_t v, const char* op) {
  if (v < 0 || v > INT_MAX) throw Error(std::string(op) + ": size " + std::to_string(v) + " exceeds cuDNN's int range");
  return int(v);
}

ConvShape conv_shape(const char* op, const Tensor& x, const Tensor& w, const Tensor& y,
                     const Conv2dParams& p) {
  if (x.dim() != 4 || w.dim() != 4 || y.dim() != 4)
    throw Error(std::string(op) + ": input " + shape_str(x.shape()) + ", weight " +
                shape_str(w.shape()) + ", output " + shape_str(y.shape()) + " must be 4-D");
  if (w.size(1) != x.size(1))
    throw Error(std::string(op) + ": weight has " + std::to_string(w.size(1)) +
                " input channels, input has " + std::to_string(x.size(1)));
  if (p.stride < 1 || p.pad < 0)
    throw Error(std::string(op) + ": stride " + std::to_string(p.stride) + " and pad " +
                std::to_string(p.pad) + " are invalid");
  const int64_t ho = (x.size(2) + 2 * p.pad - w.size(2)) / p.stride + 1;
  const int64_t wo = (x.size(3) + 2 * p.pad - w.size(3)) / p.stride + 1;
  if (y.size(0) != x.size(0) || y.size(1) != w.size(0) || y.size(2) != ho || y.size(3) != wo)
    throw Error(std::string(op) + ": output " + shape_str(y.shape()) + " does not match input " +
                shape_str(x.shape()) + ", weight " + shape_str(w.shape()) + ", stride " +
                std::to_string(p.stride) + ", pad " + std::to_string(p.pad));
  return ConvShape{to_int(x.size(0), op), to_int(x.size(1), op), to_int(x.size(2), op),
                   to_int(x.size(3), op), to_int(w.size(0), op), to_int(w.size(2), op),
                   to_int(w.size(3), op), to_int(ho, op), to_int(wo, op), to_int(p.stride, op),
                   to_int(p.pad, op)};
}

cudnnDataType_t cudnn_dtype(const char* op, DType dt) {
  if (dt == DType::F32) return CUDNN_DATA_FLOAT;
  if (dt == DType::F64) return CUDNN_DATA_DOUBLE;
  throw Error(std::string(op) + ": the CUDA backend convolves f32 or f64, got " + dtype_name(dt));
}

class TensorDesc {
 public:
  TensorDesc(cudnnDataType_t dt, int n, int c, int h, int w) {
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&d_));
    cudnnStatus_t s = cudnnSetTensor4dDescriptor(d_, CUDNN_TENSOR_NCHW, dt, n, c, h, w);
    if (s != CUDNN_STATUS_SUCCESS) cudnnDestroyTensorDescriptor(d_);
    CUDNN_CHECK(s);
  }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d_); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  operator cudnnTensorDescriptor_t() const { return d_; }

 private:
  cudnnTensorDescriptor_t d_ = nullptr;
};

class FilterDesc {
 public:
  FilterDesc(cudnnDataType_t dt, int k, int c, int h, int w) {
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&d_));
    cudnnStatus_t s = cudnnSetFilter4dDescriptor(d_, dt, CUDNN_TENSOR_NCHW, k, c, h, w);
    if (s != CUDNN_STATUS_SUCCESS) cudnnDestroyFilterDescriptor(d_);
    CUDNN_CHECK(s);
  }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d_); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
  operator cudnnFilterDescriptor_t() const { return d_; }

 private:
  cudnnFilterDescriptor_t d_ = nullptr;
};

class ConvDesc {
 public:
  ConvDesc(cudnnDataType_t dt, int stride, int pad, cudnnMathType_t math) {
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d_));
    cudnnStatus_t s = cudnnSetConvolution2dDescriptor(d_, pad, pad, stride, stride, 1, 1,
                                                      CUDNN_CROSS_CORRELATION, dt);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnSetConvolutionMathType(d_, math);
    if (s != CUDNN_STATUS_SUCCESS) cudnnDestroyConvolutionDescriptor(d_);
    CUDNN_CHECK(s);
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d_); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
  operator cudnnConvolutionDescriptor_t() const { return d_; }
  void set_math(cudnnMathType_t math) { CUDNN_CHECK(cudnnSetConvolutionMathType(d_, math)); }

 private:
  cudnnConvolutionDescriptor_t d_ = nullptr;
};

// All descriptors of one call.
struct ConvDescs {
  cudnnDataType_t dtype;
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
  ConvDescs(cudnnDataType_t dt, const ConvShape& s, cudnnMathType_t math)
      : dtype(dt),
        x(dt, s.n, s.c, s.h, s.w),
        y(dt, s.n, s.k, s.ho, s.wo),
        w(dt, s.k, s.c, s.kh, s.kw),
        conv(dt, s.stride, s.pad, math) {}
};

enum class Pass { Forward, BackwardData, BackwardFilter };

struct AlgoChoice {
  int algo = 0;
  size_t workspace = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

using AlgoKey = std::array<int, 14>;

std::mutex& cache_mutex() {
  static std::mutex m;
  return m;
}
std::map<AlgoKey, AlgoChoice>& algo_cache() {
  static std::map<AlgoKey, AlgoChoice> cache;
  return cache;
}

// The first of the heuristics' ranking that runs (status), keeps full f32 precision unless
// TF32 is allowed, and fits the workspace cap; deterministic algorithms are preferred so
// training runs repeat exactly where cuDNN can.
template <typename Perf, typename WorkspaceOf>
AlgoChoice pick_algo(const char* op, const Perf* perf, int count, bool full_f32,
                     WorkspaceOf workspace_of) {
  for (int pass = 0; pass < 2; ++pass) {
    for (int i = 0; i < count; ++i) {
      const Perf& r = perf[i];
      if (r.status != CUDNN_STATUS_SUCCESS) continue;
      if (pass == 0 && r.determinism != CUDNN_DETERMINISTIC) continue;
      if (full_f32 && (r.mathType == CUDNN_TENSOR_OP_MATH ||
                       r.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
        continue;
      // CUDNN_DEFAULT_MATH permits TF32 on Ampere and later: full f32 runs FMA kernels only.
      const cudnnMathType_t math = full_f32 ? CUDNN_FMA_MATH : r.mathType;
      size_t ws = 0;
      if (!workspace_of(int(r.algo), math, &ws) || ws > kMaxWorkspace) continue;
      return AlgoChoice{int(r.algo), ws, math};
    }
  }
  throw Error(std::string(op) + ": cuDNN offers no usable algorithm for these shapes");
}

// Chooses (once per key) and prepares descs.conv's math type for the chosen algorithm.
AlgoChoice choose(cudnnHandle_t handle, Pass pass, const char* op, const ConvShape& s,
                  ConvDescs& d, bool allow_tf32) {
  const bool full_f32 = d.dtype == CUDNN_DATA_FLOAT && !allow_tf32;
  const AlgoKey key{int(pass), int(d.dtype), int(allow_tf32), s.n, s.c, s.h, s.w, s.k, s.kh, s.kw,
                    s.ho, s.wo, s.stride, s.pad};
  {
    std::lock_guard<std::mutex> lock(cache_mutex());
    auto it = algo_cache().find(key);
    if (it != algo_cache().end()) {
      d.conv.set_math(it->second.math);
      return it->second;
    }
  }
  AlgoChoice choice;
  // Sets the math type a candidate would run with; false when cuDNN refuses it.
  auto with_math = [&](cudnnMathType_t math) {
    return cudnnSetConvolutionMathType(d.conv, math) == CUDNN_STATUS_SUCCESS;
  };
  int returned = 0;
  if (pass == Pass::Forward) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle, d.x, d.w, d.conv, d.y,
                                                       CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                                                       &returned, perf));
    choice = pick_algo(op, perf, returned, full_f32, [&](int algo, cudnnMathType_t m, size_t* ws) {
      return with_math(m) && cudnnGetConvolutionForwardWorkspaceSize(
                                 handle, d.x, d.w, d.conv, d.y, cudnnConvolutionFwdAlgo_t(algo),
                                 ws) == CUDNN_STATUS_SUCCESS;
    });
  } else if (pass == Pass::BackwardData) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle, d.w, d.y, d.conv, d.x,
                                                            CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                                                            &returned, perf));
    choice = pick_algo(op, perf, returned, full_f32, [&](int algo, cudnnMathType_t m, size_t* ws) {
      return with_math(m) && cudnnGetConvolutionBackwardDataWorkspaceSize(
                                 handle, d.w, d.y, d.conv, d.x,
                                 cudnnConvolutionBwdDataAlgo_t(algo), ws) == CUDNN_STATUS_SUCCESS;
    });
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
        handle, d.x, d.y, d.conv, d.w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, perf));
    choice = pick_algo(op, perf, returned, full_f32, [&](int algo, cudnnMathType_t m, size_t* ws) {
      return with_math(m) && cudnnGetConvolutionBackwardFilterWorkspaceSize(
                                 handle, d.x, d.y, d.conv, d.w,
                                 cudnnConvolutionBwdFilterAlgo_t(algo), ws) == CUDNN_STATUS_SUCCESS;
    });
  }
  d.conv.set_math(choice.math);
  std::lock_guard<std::mutex> lock(cache_mutex());
  algo_cache().emplace(key, choice);
  return choice;
}

// cuDNN's alpha = 1, beta = 0 (overwrite), as float for f32 data and double for f64.
struct Scaling {
  float f1 = 1.0f, f0 = 0.0f;
  double d1 = 1.0, d0 = 0.0;
  const void* one(cudnnDataType_t dt) const { return dt == CUDNN_DATA_DOUBLE ? (const void*)&d1 : &f1; }
  const void* zero(cudnnDataType_t dt) const { return dt == CUDNN_DATA_DOUBLE ? (const void*)&d0 : &f0; }
};

std::string describe(const char* op, const Tensor& a, const Tensor& b, const Tensor& c) {
  return std::string(op) + " " + shape_str(a.shape()) + ", " + shape_str(b.shape()) + " -> " +
         shape_str(c.shape());
}

}  // namespace

void CudaBackend::conv2d_forward(const Tensor& x, const Tensor& w, Tensor& y,
                                 const Conv2dParams& p) {
  const char* op = "conv2d_forward";
  const ConvShape s = conv_shape(op, x, w, y, p);
  const cudnnDataType_t dt = cudnn_dtype(op, x.dtype());
  if (y.numel() == 0) return;
  if (x.numel() == 0 || w.numel() == 0) return fill(y, 0.0);
  ConvDescs d(dt, s, allow_tf32_ || dt == CUDNN_DATA_DOUBLE ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH);
  try {
    const AlgoChoice a = choose(cudnn_, Pass::Forward, op, s, d, allow_tf32_);
    CudaBuffer ws(a.workspace);
    Scaling k;
    CUDNN_CHECK(cudnnConvolutionForward(cudnn_, k.one(dt), d.x, x.raw_data(), d.w, w.raw_data(),
                                        d.conv, cudnnConvolutionFwdAlgo_t(a.algo), ws.get(),
                                        ws.bytes(), k.zero(dt), d.y, y.raw_data()));
  } catch (const Error& e) {
    throw Error(describe(op, x, w, y) + ": " + e.what());
  }
}

void CudaBackend::conv2d_backward_data(const Tensor& gy, const Tensor& w, Tensor& gx,
                                       const Conv2dParams& p) {
  const char* op = "conv2d_backward_data";
  const ConvShape s = conv_shape(op, gx, w, gy, p);
  const cudnnDataType_t dt = cudnn_dtype(op, gy.dtype());
  if (gx.numel() == 0) return;
  if (gy.numel() == 0 || w.numel() == 0) return fill(gx, 0.0);
  ConvDescs d(dt, s, allow_tf32_ || dt == CUDNN_DATA_DOUBLE ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH);
  try {
    const AlgoChoice a = choose(cudnn_, Pass::BackwardData, op, s, d, allow_tf32_);
    CudaBuffer ws(a.workspace);
    Scaling k;
    CUDNN_CHECK(cudnnConvolutionBackwardData(cudnn_, k.one(dt), d.w, w.raw_data(), d.y,
                                             gy.raw_data(), d.conv,
                                             cudnnConvolutionBwdDataAlgo_t(a.algo), ws.get(),
                                             ws.bytes(), k.zero(dt), d.x, gx.raw_data()));
  } catch (const Error& e) {
    throw Error(describe(op, gy, w, gx) + ": " + e.what());
  }
}

void CudaBackend::conv2d_backward_weight(const Tensor& gy, const Tensor& x, Tensor& gw,
                                         const Conv2dParams& p) {
  const char* op = "conv2d_backward_weight";
  const ConvShape s = conv_shape(op, x, gw, gy, p);
  const cudnnDataType_t dt = cudnn_dtype(op, gy.dtype());
  if (gw.numel() == 0) return;
  if (gy.numel() == 0 || x.numel() == 0) return fill(gw, 0.0);
  ConvDescs d(dt, s, allow_tf32_ || dt == CUDNN_DATA_DOUBLE ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH);
  try {
    const AlgoChoice a = choose(cudnn_, Pass::BackwardFilter, op, s, d, allow_tf32_);
    CudaBuffer ws(a.workspace);
    Scaling k;
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(cudnn_, k.one(dt), d.x, x.raw_data(), d.y,
                                               gy.raw_data(), d.conv,
                                               cudnnConvolutionBwdFilterAlgo_t(a.algo), ws.get(),
                                               ws.bytes(), k.zero(dt), d.w, gw.raw_data()));
  } catch (const Error& e) {
    throw Error(describe(op, gy, x, gw) + ": " + e.what());
  }
}

}  // namespace pconv
