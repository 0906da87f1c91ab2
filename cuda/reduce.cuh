#pragma once
// Segmented sums: for each output o in [0, O), K sums of f(o, r) over r in [0, R), in
// double whatever the tensor dtype, handed to emit(o, sums). Used by sum_to and batch norm.
// The order of additions is fixed by the shapes alone, so results are reproducible run to
// run (no atomics).
#include "cuda/allocator.h"
#include "cuda/kernel_util.cuh"

namespace pconv {

template <int K>
struct Sums {
  double v[K];
};

// Sum over the block of each thread's K values; the result is valid in thread 0.
template <int K>
__device__ Sums<K> block_sum(Sums<K> s) {
  __shared__ double shared[K][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int k = 0; k < K; ++k) {
    for (int off = 16; off > 0; off >>= 1) s.v[k] += __shfl_down_sync(0xffffffffu, s.v[k], off);
    if (lane == 0) shared[k][warp] = s.v[k];
  }
  __syncthreads();
  Sums<K> r;
  const int warps = int(blockDim.x) / 32;
  for (int k = 0; k < K; ++k) {
    double v = 0;
    if (warp == 0) {
      v = lane < warps ? shared[k][lane] : 0.0;
      for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    }
    r.v[k] = v;
  }
  return r;
}

// One thread per output: when R is short, or there are enough outputs to fill the GPU.
template <int K, typename F, typename E>
__global__ void serial_sums_kernel(F f, E emit, int64_t outputs, int64_t length) {
  PCONV_GRID_STRIDE(o, outputs) {
    Sums<K> s;
    for (int k = 0; k < K; ++k) s.v[k] = 0;
    for (int64_t r = 0; r < length; ++r) {
      const Sums<K> v = f(o, r);
      for (int k = 0; k < K; ++k) s.v[k] += v.v[k];
    }
    emit(o, s);
  }
}

// One block per (output, chunk of R): partial[(o * chunks + c) * K + k].
template <int K, typename F>
__global__ void chunk_sums_kernel(F f, int64_t length, int64_t chunk, int64_t chunks,
                                  double* partial) {
  const int64_t o = int64_t(blockIdx.x) / chunks, c = int64_t(blockIdx.x) % chunks;
  const int64_t begin = c * chunk, end = min(length, begin + chunk);
  Sums<K> s;
  for (int k = 0; k < K; ++k) s.v[k] = 0;
  for (int64_t r = begin + threadIdx.x; r < end; r += blockDim.x) {
    const Sums<K> v = f(o, r);
    for (int k = 0; k < K; ++k) s.v[k] += v.v[k];
  }
  s = block_sum<K>(s);
  if (threadIdx.x == 0)
    for (int k = 0; k < K; ++k) partial[(o * chunks + c) * K + k] = s.v[k];
}

template <int K, typename E>
__global__ void finish_sums_kernel(E emit, int64_t outputs, int64_t chunks,
                                   const double* partial) {
  PCONV_GRID_STRIDE(o, outputs) {
    Sums<K> s;
    for (int k = 0; k < K; ++k) s.v[k] = 0;
    for (int64_t c = 0; c < chunks; ++c)
      for (int k = 0; k < K; ++k) s.v[k] += partial[(o * chunks + c) * K + k];
    emit(o, s);
  }
}

template <int K, typename F, typename E>
void segmented_sum(F f, E emit, int64_t outputs, int64_t length, cudaStream_t stream,
                   const std::string& what) {
  if (outputs == 0) return;
  if (length <= 64 || outputs >= 16384) {
    serial_sums_kernel<K><<<blocks_for(outputs), kThreads, 0, stream>>>(f, emit, outputs, length);
    CUDA_CHECK_LAUNCH(what);
    return;
  }
  // Each chunk gives every thread of a block at least 8 elements; split further only while
  // there are too few blocks to occupy the GPU (a few per SM on an H100).
  const int64_t by_length = (length + 8 * kThreads - 1) / (8 * kThreads);
  const int64_t by_outputs = std::max<int64_t>(1, 1024 / outputs);
  const int64_t chunks = std::max<int64_t>(1, std::min(by_length, by_outputs));
  const int64_t chunk = (length + chunks - 1) / chunks;
  CudaBuffer partial(size_t(outputs * chunks * K) * sizeof(double));
  chunk_sums_kernel<K><<<unsigned(outputs * chunks), kThreads, 0, stream>>>(
      f, length, chunk, chunks, partial.as<double>());
  CUDA_CHECK_LAUNCH(what);
  finish_sums_kernel<K><<<blocks_for(outputs), kThreads, 0, stream>>>(emit, outputs, chunks,
                                                                     partial.as<double>());
  CUDA_CHECK_LAUNCH(what);
}

}  // namespace pconv
