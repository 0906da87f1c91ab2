// fill, counter-based random numbers and dtype conversion on the GPU. The per-element
// formulas are cuda/host_device.h's copies of the CPU backend's, so a seed gives the same
// tensor on both devices.
#include "cuda/host_device.h"
#include "cuda/kernel_util.cuh"

namespace pconv {

namespace {

__global__ void fill_kernel(void* data, DType dt, int64_t n, double value) {
  PCONV_GRID_STRIDE(i, n) hd::store_double(data, dt, i, value);
}

__global__ void uniform_kernel(void* data, DType dt, int64_t n, double low, double high,
                               uint64_t seed, uint64_t offset) {
  PCONV_GRID_STRIDE(i, n)
  hd::store_double(data, dt, i, hd::uniform_value(low, high, seed, offset + uint64_t(i)));
}

__global__ void normal_kernel(void* data, DType dt, int64_t n, double mean, double stddev,
                              uint64_t seed, uint64_t offset) {
  PCONV_GRID_STRIDE(i, n)
  hd::store_double(data, dt, i, hd::normal_value(mean, stddev, seed, offset, uint64_t(i)));
}

__global__ void convert_kernel(const void* src, DType sd, void* dst, DType dd, int64_t n) {
  PCONV_GRID_STRIDE(i, n) hd::store_double(dst, dd, i, hd::load_as_double(src, sd, i));
}

}  // namespace

void CudaBackend::run_probe_kernel() {
  void* p = allocate(sizeof(double));
  try {
    fill_kernel<<<1, 1, 0, stream_>>>(p, DType::F64, 1, 1.0);
    CUDA_CHECK_LAUNCH("probe kernel (is the GPU one of the architectures pconv was built for?)");
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  } catch (...) {
    deallocate(p, sizeof(double));
    throw;
  }
  deallocate(p, sizeof(double));
}

void CudaBackend::fill(Tensor& t, double value) {
  const int64_t n = t.numel();
  if (n == 0) return;
  if (value == 0.0) {  // +0.0 is all-zero bits in every dtype
    CUDA_CHECK(cudaMemsetAsync(t.raw_data(), 0, t.nbytes(), stream_));
    return;
  }
  fill_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(t.raw_data(), t.dtype(), n, value);
  CUDA_CHECK_LAUNCH("fill " + shapes_of(t));
}

void CudaBackend::fill_uniform(Tensor& t, double low, double high, uint64_t seed, uint64_t offset) {
  const int64_t n = t.numel();
  if (n == 0) return;
  uniform_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(t.raw_data(), t.dtype(), n, low, high,
                                                          seed, offset);
  CUDA_CHECK_LAUNCH("fill_uniform " + shapes_of(t));
}

void CudaBackend::fill_normal(Tensor& t, double mean, double stddev, uint64_t seed,
                              uint64_t offset) {
  const int64_t n = t.numel();
  if (n == 0) return;
  normal_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(t.raw_data(), t.dtype(), n, mean, stddev,
                                                         seed, offset);
  CUDA_CHECK_LAUNCH("fill_normal " + shapes_of(t));
}

void CudaBackend::copy(const Tensor& src, Tensor& dst) {
  check_numel("copy", src, "source", dst, "destination");
  const int64_t n = src.numel();
  if (n == 0) return;
  if (src.dtype() == dst.dtype()) {
    CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), src.nbytes(),
                               cudaMemcpyDeviceToDevice, stream_));
    return;
  }
  convert_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(src.raw_data(), src.dtype(),
                                                          dst.raw_data(), dst.dtype(), n);
  CUDA_CHECK_LAUNCH(std::string("copy ") + dtype_name(src.dtype()) + " -> " +
                    dtype_name(dst.dtype()) + " " + shapes_of(src));
}

}  // namespace pconv
