#pragma once
// What every kernel file shares: launch geometry, grid-stride loops, the f32/f64 dispatch
// and float/double overloads of the math functions.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "cuda/check.h"
#include "cuda/cuda_backend.h"

namespace pconv {

constexpr int kThreads = 256;  // a multiple of 32: block_sum in reduce.cuh relies on it

// Enough blocks to cover n once, capped: grid-stride loops do the rest.
inline unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return unsigned(std::clamp<int64_t>(b, 1, int64_t(1) << 20));
}

#define PCONV_GRID_STRIDE(i, n)                                              \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

// f(float{}) or f(double{}) for the tensor's dtype. A bf16 storage type would compute in
// f32: it would get its own branch here, not new kernels.
template <typename F>
void cuda_dispatch_float(const char* op, DType dt, F&& f) {
  if (dt == DType::F32) {
    f(float{});
  } else if (dt == DType::F64) {
    f(double{});
  } else {
    throw Error(std::string(op) + ": the CUDA backend computes in f32 or f64, got " +
                dtype_name(dt));
  }
}

__device__ inline float dev_exp(float x) { return expf(x); }
__device__ inline double dev_exp(double x) { return exp(x); }
__device__ inline float dev_log(float x) { return logf(x); }
__device__ inline double dev_log(double x) { return log(x); }
__device__ inline float dev_sqrt(float x) { return sqrtf(x); }
__device__ inline double dev_sqrt(double x) { return sqrt(x); }
__device__ inline float dev_abs(float x) { return fabsf(x); }
__device__ inline double dev_abs(double x) { return fabs(x); }

// "op: a [..] and b [..] ..." style messages need shapes; this keeps call sites short.
inline std::string shapes_of(const Tensor& a) { return shape_str(a.shape()); }

inline void check_numel(const char* op, const Tensor& a, const char* an, const Tensor& b,
                        const char* bn) {
  if (a.numel() != b.numel())
    throw Error(std::string(op) + ": " + an + " " + shapes_of(a) + " and " + bn + " " +
                shapes_of(b) + " differ in size");
}

}  // namespace pconv
