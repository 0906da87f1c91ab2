// Convolution through cuDNN: every cuDNN call of pconv is in this file (cuDNN's API churns;
// the legacy convolution API used here is deprecated in cuDNN 9 but complete). Descriptors
// are RAII; the algorithms for each (pass, shapes, dtype) are ranked once, by timing them on
// the call's own buffers (cudnnFind*Ex; PCONV_CUDNN_FIND=0: cuDNN's heuristics alone), and
// cached; a candidate that fails at run time is dropped and the next one runs
// (cuda/algo_fallback.h); workspaces come from the caching allocator. f32 uses FMA math (no
// TF32) unless PCONV_TF32=1, so GPU and CPU agree to about 1e-6 relative.
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "cuda/algo_fallback.h"
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
  bool operator==(const AlgoChoice&) const = default;
};

using AlgoKey = std::array<int, 14>;

std::mutex& cache_mutex() {
  static std::mutex m;
  return m;
}
// Candidates, best first, per key; std::map keeps references to its values valid.
std::map<AlgoKey, std::vector<AlgoChoice>>& algo_cache() {
  static std::map<AlgoKey, std::vector<AlgoChoice>> cache;
  return cache;
}

// On the H200 the timed ranking made the f32 training step 1.17x faster than the heuristics'
// first choice (TF32: 1.02x), when offered the same 1 GiB workspace cap; with 256 MiB it lost
// to them (docs/gpu.md). PCONV_CUDNN_FIND=0 skips the search (it costs the first step a few
// seconds).
bool timed_search() {
  static const bool on = [] {
    const char* v = std::getenv("PCONV_CUDNN_FIND");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

// cuDNN's results that ran (status), keep full f32 precision unless TF32 is allowed and fit the
// workspace cap, appended to `out` unless already there. Deterministic algorithms go first, so
// training runs repeat exactly where cuDNN can; otherwise cuDNN's order is kept (measured time
// for a timed search, the heuristics' rank otherwise).
template <typename Perf, typename WorkspaceOf>
void rank_algos(const Perf* perf, int count, bool full_f32, WorkspaceOf workspace_of, std::vector<AlgoChoice>& out) {
  std::vector<AlgoChoice> deterministic, other;
  for (int i = 0; i < count; ++i) {
    const Perf& r = perf[i];
    if (r.status != CUDNN_STATUS_SUCCESS) continue;
    if (full_f32 && (r.mathType == CUDNN_TENSOR_OP_MATH || r.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
      continue;
    // CUDNN_DEFAULT_MATH permits TF32 on Ampere and later: full f32 runs FMA kernels only.
    const cudnnMathType_t math = full_f32 ? CUDNN_FMA_MATH : r.mathType;
    size_t ws = 0;
    if (!workspace_of(int(r.algo), math, &ws) || ws > kMaxWorkspace) continue;
    const AlgoChoice c{int(r.algo), ws, math};
    if (std::find(out.begin(), out.end(), c) != out.end()) continue;
    (r.determinism == CUDNN_DETERMINISTIC ? deterministic : other).push_back(c);
  }
  out.insert(out.end(), deterministic.begin(), deterministic.end());
  out.insert(out.end(), other.begin(), other.end());
}

// The candidates for one pass (ranked once per key, then cached). `find(perf, &returned, ws,
// bytes)` is the timed search on the call's buffers, `heuristic(perf, &returned)` cuDNN's
// ranking without running anything, `workspace_of` the workspace an algorithm needs. The timed
// ranking comes first; the heuristics' candidates follow as further fallbacks.
template <typename Perf, int kCount, typename Find, typename Heuristic, typename WorkspaceOf>
std::vector<AlgoChoice>& candidates(const AlgoKey& key, const char* op, bool full_f32, Find&& find,
                                    Heuristic&& heuristic, WorkspaceOf&& workspace_of) {
  {
    std::lock_guard<std::mutex> lock(cache_mutex());
    auto it = algo_cache().find(key);
    if (it != algo_cache().end()) return it->second;
  }
  std::vector<AlgoChoice> ranked;
  Perf perf[kCount];
  int returned = 0;
  if (timed_search()) {
    try {
      CudaBuffer ws(kMaxWorkspace);
      if (find(perf, &returned, ws.get(), ws.bytes()) == CUDNN_STATUS_SUCCESS)
        rank_algos(perf, returned, full_f32, workspace_of, ranked);
    } catch (const Error&) {
      // No memory for the search's workspace: the heuristics alone rank this shape.
    }
  }
  returned = 0;
  if (heuristic(perf, &returned) == CUDNN_STATUS_SUCCESS) rank_algos(perf, returned, full_f32, workspace_of, ranked);
  if (ranked.empty()) throw Error(std::string(op) + ": cuDNN offers no usable algorithm for these shapes");
  std::lock_guard<std::mutex> lock(cache_mutex());
  return algo_cache().emplace(key, std::move(ranked)).first->second;
}

AlgoKey key_of(Pass pass, const ConvDescs& d, bool allow_tf32, const ConvShape& s) {
  return AlgoKey{int(pass), int(d.dtype), int(allow_tf32), s.n, s.c, s.h, s.w, s.k, s.kh, s.kw,
                 s.ho, s.wo, s.stride, s.pad};
}

// Statuses after which another algorithm may still run (not a bad call, not a lost context).
bool recoverable(cudnnStatus_t st) {
  const int category = int(st) / 1000 * 1000;
  return category == CUDNN_STATUS_NOT_SUPPORTED || category == CUDNN_STATUS_EXECUTION_FAILED ||
         st == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED ||
         st == CUDNN_STATUS_INTERNAL_ERROR_BAD_LAUNCH_PARAM;
}

// Runs the first candidate that works (cuda/algo_fallback.h): sets its math type, takes its
// workspace and calls run(algo, workspace, bytes).
template <typename Run>
void run_pass(std::vector<AlgoChoice>& cands, ConvDescs& d, Run&& run) {
  run_first_that_works(cands, cache_mutex(), "cuDNN", [&](const AlgoChoice& a) {
    const std::string name = "algorithm " + std::to_string(a.algo);
    if (cudnnSetConvolutionMathType(d.conv, a.math) != CUDNN_STATUS_SUCCESS)
      return Attempt{false, true, name + ": math type refused"};
    std::unique_ptr<CudaBuffer> ws;
    try {
      ws = std::make_unique<CudaBuffer>(a.workspace);
    } catch (const Error& e) {
      return Attempt{false, true, name + ": workspace of " + std::to_string(a.workspace) + " bytes: " + e.what()};
    }
    const cudnnStatus_t st = run(a.algo, ws->get(), ws->bytes());
    if (st == CUDNN_STATUS_SUCCESS) return Attempt{true, false, ""};
    return Attempt{false, recoverable(st), name + ": " + cudnnGetErrorString(st)};
  });
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
  const bool full_f32 = dt == CUDNN_DATA_FLOAT && !allow_tf32_;
  const std::string what = describe(op, x, w, y);
  try {
    auto& cands = candidates<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT>(
        key_of(Pass::Forward, d, allow_tf32_, s), op, full_f32,
        [&](cudnnConvolutionFwdAlgoPerf_t* perf, int* n, void* ws, size_t bytes) {
          return cudnnFindConvolutionForwardAlgorithmEx(cudnn_, d.x, x.raw_data(), d.w, w.raw_data(), d.conv, d.y,
                                                        y.raw_data(), CUDNN_CONVOLUTION_FWD_ALGO_COUNT, n, perf, ws,
                                                        bytes);
        },
        [&](cudnnConvolutionFwdAlgoPerf_t* perf, int* n) {
          return cudnnGetConvolutionForwardAlgorithm_v7(cudnn_, d.x, d.w, d.conv, d.y,
                                                        CUDNN_CONVOLUTION_FWD_ALGO_COUNT, n, perf);
        },
        [&](int algo, cudnnMathType_t m, size_t* ws) {
          return cudnnSetConvolutionMathType(d.conv, m) == CUDNN_STATUS_SUCCESS &&
                 cudnnGetConvolutionForwardWorkspaceSize(cudnn_, d.x, d.w, d.conv, d.y,
                                                         cudnnConvolutionFwdAlgo_t(algo), ws) == CUDNN_STATUS_SUCCESS;
        });
    Scaling k;
    run_pass(cands, d, [&](int algo, void* ws, size_t bytes) {
      return cudnnConvolutionForward(cudnn_, k.one(dt), d.x, x.raw_data(), d.w, w.raw_data(), d.conv,
                                     cudnnConvolutionFwdAlgo_t(algo), ws, bytes, k.zero(dt), d.y, y.raw_data());
    });
  } catch (const Error& e) {
    throw Error(what + ": " + e.what());
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
  const bool full_f32 = dt == CUDNN_DATA_FLOAT && !allow_tf32_;
  const std::string what = describe(op, gy, w, gx);
  try {
    auto& cands = candidates<cudnnConvolutionBwdDataAlgoPerf_t, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT>(
        key_of(Pass::BackwardData, d, allow_tf32_, s), op, full_f32,
        [&](cudnnConvolutionBwdDataAlgoPerf_t* perf, int* n, void* ws, size_t bytes) {
          return cudnnFindConvolutionBackwardDataAlgorithmEx(cudnn_, d.w, w.raw_data(), d.y, gy.raw_data(), d.conv,
                                                             d.x, gx.raw_data(), CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                                                             n, perf, ws, bytes);
        },
        [&](cudnnConvolutionBwdDataAlgoPerf_t* perf, int* n) {
          return cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnn_, d.w, d.y, d.conv, d.x,
                                                             CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, n, perf);
        },
        [&](int algo, cudnnMathType_t m, size_t* ws) {
          return cudnnSetConvolutionMathType(d.conv, m) == CUDNN_STATUS_SUCCESS &&
                 cudnnGetConvolutionBackwardDataWorkspaceSize(cudnn_, d.w, d.y, d.conv, d.x,
                                                              cudnnConvolutionBwdDataAlgo_t(algo),
                                                              ws) == CUDNN_STATUS_SUCCESS;
        });
    Scaling k;
    run_pass(cands, d, [&](int algo, void* ws, size_t bytes) {
      return cudnnConvolutionBackwardData(cudnn_, k.one(dt), d.w, w.raw_data(), d.y, gy.raw_data(), d.conv,
                                          cudnnConvolutionBwdDataAlgo_t(algo), ws, bytes, k.zero(dt), d.x,
                                          gx.raw_data());
    });
  } catch (const Error& e) {
    throw Error(what + ": " + e.what());
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
  const bool full_f32 = dt == CUDNN_DATA_FLOAT && !allow_tf32_;
  const std::string what = describe(op, gy, x, gw);
  try {
    auto& cands = candidates<cudnnConvolutionBwdFilterAlgoPerf_t, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT>(
        key_of(Pass::BackwardFilter, d, allow_tf32_, s), op, full_f32,
        [&](cudnnConvolutionBwdFilterAlgoPerf_t* perf, int* n, void* ws, size_t bytes) {
          return cudnnFindConvolutionBackwardFilterAlgorithmEx(cudnn_, d.x, x.raw_data(), d.y, gy.raw_data(), d.conv,
                                                               d.w, gw.raw_data(),
                                                               CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, n, perf, ws,
                                                               bytes);
        },
        [&](cudnnConvolutionBwdFilterAlgoPerf_t* perf, int* n) {
          return cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnn_, d.x, d.y, d.conv, d.w,
                                                               CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, n, perf);
        },
        [&](int algo, cudnnMathType_t m, size_t* ws) {
          return cudnnSetConvolutionMathType(d.conv, m) == CUDNN_STATUS_SUCCESS &&
                 cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnn_, d.x, d.y, d.conv, d.w,
                                                                cudnnConvolutionBwdFilterAlgo_t(algo),
                                                                ws) == CUDNN_STATUS_SUCCESS;
        });
    Scaling k;
    run_pass(cands, d, [&](int algo, void* ws, size_t bytes) {
      return cudnnConvolutionBackwardFilter(cudnn_, k.one(dt), d.x, x.raw_data(), d.y, gy.raw_data(), d.conv,
                                            cudnnConvolutionBwdFilterAlgo_t(algo), ws, bytes, k.zero(dt), d.w,
                                            gw.raw_data());
    });
  } catch (const Error& e) {
    throw Error(what + ": " + e.what());
  }
}

}  // namespace pconv
