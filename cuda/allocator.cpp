#include "cuda/allocator.h"

#include <cuda_runtime.h>

#include <bit>
#include <cstdio>
#include <string>

#include "core/dtype.h"
#include "cuda/check.h"

namespace pconv {

namespace {
std::string mib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", double(bytes) / (1024.0 * 1024.0));
  return buf;
}
}  // namespace

CudaAllocator& CudaAllocator::instance() {
  // Never destroyed: tensors held in statics may be freed after main returns.
  static CudaAllocator* a = new CudaAllocator;
  return *a;
}

size_t CudaAllocator::size_class(size_t bytes) {
  if (bytes <= 512) return 512;
  // 2^(k-1) < bytes <= 2^k: classes 2^(k-1) · {1.25, 1.5, 1.75, 2} waste at most a quarter.
  const size_t top = std::bit_ceil(bytes);
  const size_t step = top / 8;
  return (bytes + step - 1) / step * step;
}

void* CudaAllocator::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t cls = size_class(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  void* p = nullptr;
  auto it = free_.find(cls);
  if (it != free_.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    stats_.cached -= cls;
    ++stats_.cache_hits;
  } else {
    cudaError_t err = cudaMalloc(&p, cls);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // clear the sticky-free error before retrying
      release_cached_locked();
      err = cudaMalloc(&p, cls);
    }
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      throw Error("cuda: out of memory allocating " + mib(cls) + " MiB (" + mib(stats_.in_use) +
                  " MiB in use, " + mib(stats_.cached) + " MiB cached)");
    }
    CUDA_CHECK(err);
    ++stats_.device_allocs;
  }
  live_.emplace(p, cls);
  stats_.in_use += cls;
  if (stats_.in_use > stats_.peak_in_use) stats_.peak_in_use = stats_.in_use;
  return p;
}

void CudaAllocator::deallocate(void* ptr) noexcept {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  if (it == live_.end()) {
    std::fprintf(stderr, "pconv cuda: deallocate of a pointer this allocator did not hand out\n");
    return;
  }
  const size_t cls = it->second;
  live_.erase(it);
  stats_.in_use -= cls;
  stats_.cached += cls;
  try {
    free_[cls].push_back(ptr);
  } catch (...) {
    // Out of host memory for the free list: hand the block back to the driver instead.
    stats_.cached -= cls;
    cudaFree(ptr);
  }
}

void CudaAllocator::release_cached_locked() {
  // Work queued earlier may still read blocks that were freed to the cache.
  cudaDeviceSynchronize();
  for (auto& [cls, blocks] : free_) {
    for (void* p : blocks) cudaFree(p);
    stats_.cached -= cls * blocks.size();
    blocks.clear();
  }
}

void CudaAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached_locked();
}

CudaMemoryStats CudaAllocator::stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CudaAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_in_use = stats_.in_use;
}

CudaMemoryStats cuda_memory_stats() { return CudaAllocator::instance().stats(); }
void cuda_reset_peak_memory() { CudaAllocator::instance().reset_peak(); }
void cuda_empty_cache() { CudaAllocator::instance().empty_cache(); }

}  // namespace pconv
