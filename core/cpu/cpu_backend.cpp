// CPU memory, conversion, fill and random numbers.
#include "core/cpu/cpu_backend.h"

#include <malloc.h>
#include <sys/mman.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <string>

namespace pconv {

namespace {
// Tensors are large (a 512×512 UNet layer is 16–64 MiB) and short-lived. glibc serves blocks
// over 32 MiB with mmap and returns freed heap tops to the system, so every op paid page
// faults and page clearing for fresh memory: 20 % of a 512×512 forward. Keeping freed memory
// in the heap (at the cost of a higher resident size) lets the next tensor reuse it:
// measured 0.62 → 0.50 s per 512×512 forward on 2 cores. Users' own MALLOC_* settings win.
void keep_freed_memory() {
  if (!std::getenv("MALLOC_MMAP_THRESHOLD_")) mallopt(M_MMAP_THRESHOLD, 1 << 30);
  if (!std::getenv("MALLOC_TRIM_THRESHOLD_")) mallopt(M_TRIM_THRESHOLD, 1 << 30);
}
}  // namespace

Backend& cpu_backend() {
  static CpuBackend instance = [] {
    keep_freed_memory();
    CpuBackend b;
    // PCONV_HUGE_PAGES=0 turns the advice off (for measuring it, or a system where it hurts).
    const char* env = std::getenv("PCONV_HUGE_PAGES");
    b.set_huge_pages(!(env && std::string(env) == "0"));
    return b;
  }();
  return instance;
}

namespace {
std::atomic<size_t> g_in_use{0}, g_peak_in_use{0};
}  // namespace

CpuMemoryStats cpu_memory_stats() { return {g_in_use.load(), g_peak_in_use.load()}; }
void cpu_reset_peak_memory() { g_peak_in_use.store(g_in_use.load()); }

void* CpuBackend::allocate(size_t bytes) {
  // Big tensors go on transparent huge pages: a 4 KiB page fault (and its clearing) per 4 KiB of
  // every fresh activation was about half of a 512² inpaint-run process here. Where THP is in
  // "madvise" mode (Debian's default) only advised ranges get 2 MiB pages, so advise them; the
  // 2 MiB alignment lets the whole range be backed by huge pages. Small tensors keep 64 bytes
  // (AVX-512 rows) and pay nothing extra.
  constexpr size_t kHuge = size_t(2) << 20;
  void* p = nullptr;
  if (bytes >= 2 * kHuge && huge_pages_) {
    const size_t size = (bytes + kHuge - 1) / kHuge * kHuge;
    p = std::aligned_alloc(kHuge, size);
    if (p) madvise(p, size, MADV_HUGEPAGE);  // advice only: failure (no THP) changes nothing
  } else {
    p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  }
  if (!p)
    throw Error("cpu: out of memory allocating " + std::to_string(bytes >> 20) + " MiB");
  const size_t now = g_in_use.fetch_add(bytes) + bytes;
  size_t peak = g_peak_in_use.load();
  while (now > peak && !g_peak_in_use.compare_exchange_weak(peak, now)) {
  }
  return p;
}
void CpuBackend::deallocate(void* ptr, size_t bytes) {
  std::free(ptr);
  g_in_use.fetch_sub(bytes);
}
void CpuBackend::release_free_memory() { malloc_trim(0); }
void CpuBackend::copy_from_host(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void CpuBackend::copy_to_host(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }

namespace {
double load(const void* p, DType dt, int64_t i) {
  switch (dt) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::F64: return static_cast<const double*>(p)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::I64: return double(static_cast<const int64_t*>(p)[i]);
  }
  return 0;
}
void store(void* p, DType dt, int64_t i, double v) {
  switch (dt) {
    case DType::F32: static_cast<float*>(p)[i] = float(v); break;
    case DType::F64: static_cast<double*>(p)[i] = v; break;
    case DType::BF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(float(v)); break;
    case DType::F16: static_cast<uint16_t*>(p)[i] = f32_to_f16(float(v)); break;
    case DType::I64: static_cast<int64_t*>(p)[i] = int64_t(v); break;
  }
}
}  // namespace

void CpuBackend::copy(const Tensor& src, Tensor& dst) {
  if (src.numel() != dst.numel())
    throw Error("copy: source " + shape_str(src.shape()) + " and destination " +
                shape_str(dst.shape()) + " differ in size");
  if (src.dtype() == dst.dtype()) {
    std::memcpy(dst.raw_data(), src.raw_data(), src.nbytes());
    return;
  }
  const void* s = src.raw_data();
  void* d = dst.raw_data();
  const int64_t n = src.numel();
  const DType sd = src.dtype(), dd = dst.dtype();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) store(d, dd, i, load(s, sd, i));
}

void CpuBackend::fill(Tensor& t, double value) {
  const int64_t n = t.numel();
  void* d = t.raw_data();
  const DType dt = t.dtype();
  if (value == 0.0) {
    std::memset(d, 0, t.nbytes());
    return;
  }
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) store(d, dt, i, value);
}

void CpuBackend::fill_uniform(Tensor& t, double low, double high, uint64_t seed, uint64_t offset) {
  const int64_t n = t.numel();
  void* d = t.raw_data();
  const DType dt = t.dtype();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i)
    store(d, dt, i, low + (high - low) * hashed_uniform(seed, offset + uint64_t(i)));
}

void CpuBackend::fill_normal(Tensor& t, double mean, double stddev, uint64_t seed, uint64_t offset) {
  const int64_t n = t.numel();
  void* d = t.raw_data();
  const DType dt = t.dtype();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    double u1 = hashed_uniform(seed, offset + 2 * uint64_t(i));
    double u2 = hashed_uniform(seed, offset + 2 * uint64_t(i) + 1);
    double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    store(d, dt, i, mean + stddev * z);
  }
}

}  // namespace pconv
