// Device set-up, memory and host<->device copies of the CUDA backend.
#include "cuda/cuda_backend.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/distributed/communicator.h"
#include "cuda/allocator.h"
#include "cuda/check.h"

namespace pconv {

void throw_cuda_error(const char* library, const char* call, const char* message, const char* file,
                      int line) {
  const char* base = std::strrchr(file, '/');
  throw Error(std::string(library) + ": " + call + " failed: " + message + " (" +
              (base ? base + 1 : file) + ":" + std::to_string(line) + ")");
}

namespace {

// PCONV_CUDA_DEVICE when set; otherwise, for a rank of mpirun, its index among the ranks on its
// machine (one GPU per rank); otherwise GPU 0.
int device_for_this_process(int count) {
  if (const char* d = std::getenv("PCONV_CUDA_DEVICE"); d && *d) {
    char* end = nullptr;
    const long i = std::strtol(d, &end, 10);
    if (*end != '\0' || i < 0 || i >= count)
      throw Error("PCONV_CUDA_DEVICE=" + std::string(d) + ": not a device index below " + std::to_string(count));
    return int(i);
  }
  return launched_local_rank() % count;
}

}  // namespace

CudaBackend::CudaBackend() {
  const char* tf32 = std::getenv("PCONV_TF32");
  allow_tf32_ = tf32 && std::strcmp(tf32, "1") == 0;
  int count = 0;
  CUDA_CHECK(cudaGetDeviceCount(&count));
  CUDA_CHECK(cudaSetDevice(device_for_this_process(count)));
  CUDA_CHECK(cudaStreamCreate(&stream_));
  cublas_ = create_cublas_handle(stream_, allow_tf32_);
  cudnn_ = create_cudnn_handle(stream_);
  // A GPU older than the architectures built for has no kernel image: say so now rather
  // than at the first op.
  run_probe_kernel();
}

CudaBackend::~CudaBackend() {
  destroy_cudnn_handle(cudnn_);
  destroy_cublas_handle(cublas_);
  if (stream_) cudaStreamDestroy(stream_);
}

void* CudaBackend::allocate(size_t bytes) { return CudaAllocator::instance().allocate(bytes); }
void CudaBackend::deallocate(void* ptr, size_t) { CudaAllocator::instance().deallocate(ptr); }

void CudaBackend::copy_from_host(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  // The caller may free or reuse `src` as soon as we return, even if it is pinned.
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::synchronize() { CUDA_CHECK(cudaStreamSynchronize(stream_)); }

Backend* cuda_backend_or_null(std::string& why_not) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    why_not = std::string("no CUDA device: ") + cudaGetErrorString(err);
    return nullptr;
  }
  if (count == 0) {
    why_not = "no CUDA device: cudaGetDeviceCount found none";
    return nullptr;
  }
  try {
    // Never destroyed: tensors in statics may release memory after main returns.
    static CudaBackend* instance = new CudaBackend;
    return instance;
  } catch (const std::exception& e) {
    why_not = std::string("CUDA device present but unusable: ") + e.what();
    return nullptr;
  }
}

}  // namespace pconv
