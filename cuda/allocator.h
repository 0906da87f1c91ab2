#pragma once
// Caching device allocator. Blocks are rounded up to size classes (a quarter of a power of
// two apart) and, when freed, kept in a per-class free list instead of going back to
// cudaFree: a training loop allocates the same shapes every step, so after the first step
// no op calls cudaMalloc/cudaFree. Reusing a block right after its owner freed it is safe
// because all device work runs in order on the backend's one stream.
//
// Plain C++ (no CUDA header): apps and tests may include it when PCONV_HAS_CUDA is defined
// to read the memory statistics.
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace pconv {

struct CudaMemoryStats {
  size_t in_use = 0;         // bytes in blocks handed out (size-class rounded)
  size_t peak_in_use = 0;    // highest in_use since start or the last reset
  size_t cached = 0;         // bytes in freed blocks kept for reuse
  int64_t device_allocs = 0; // cudaMalloc calls so far
  int64_t cache_hits = 0;    // allocations served from the cache
};

CudaMemoryStats cuda_memory_stats();
void cuda_reset_peak_memory();
void cuda_empty_cache();  // returns every cached block to the driver

class CudaAllocator {
 public:
  static CudaAllocator& instance();
  void* allocate(size_t bytes);
  void deallocate(void* ptr) noexcept;
  void empty_cache();
  CudaMemoryStats stats();
  void reset_peak();

  // The size class a request of `bytes` is served from.
  static size_t size_class(size_t bytes);

 private:
  void release_cached_locked();
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // size class -> free blocks
  std::unordered_map<void*, size_t> live_;              // block -> size class
  CudaMemoryStats stats_;
};

// Scratch device memory for one op (cuDNN workspace, partial sums), back in the cache when
// it goes out of scope; work already queued on the stream still sees valid memory.
class CudaBuffer {
 public:
  explicit CudaBuffer(size_t bytes)
      : ptr_(bytes ? CudaAllocator::instance().allocate(bytes) : nullptr), bytes_(bytes) {}
  ~CudaBuffer() {
    if (ptr_) CudaAllocator::instance().deallocate(ptr_);
  }
  CudaBuffer(const CudaBuffer&) = delete;
  CudaBuffer& operator=(const CudaBuffer&) = delete;
  void* get() const { return ptr_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_;
  size_t bytes_;
};

}  // namespace pconv
