// The CPU's dot-product precision setting and the AVX512-BF16 check (see dot_precision.h).
#include "core/cpu/dot_precision.h"

#include <atomic>
#include <string>

#include "core/dtype.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace pconv {

namespace {

bool detect_bf16_dot() {
#if defined(__x86_64__)
  // __builtin_cpu_supports checks the OS's XSAVE state for AVX-512 as well; AVX512_BF16 is
  // CPUID leaf 7 sub-leaf 1, EAX bit 5 (not every compiler's __builtin_cpu_supports knows it).
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
      !__builtin_cpu_supports("avx512vl"))
    return false;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return false;
  return (eax >> 5) & 1u;
#else
  return false;
#endif
}

std::atomic<CpuDotPrecision> g_precision{CpuDotPrecision::F32};

}  // namespace

bool cpu_has_bf16_dot() {
  static const bool has = detect_bf16_dot();
  return has;
}

void set_cpu_dot_precision(CpuDotPrecision precision) {
  if (precision == CpuDotPrecision::BF16 && !cpu_has_bf16_dot())
    throw Error("bf16 on the CPU needs AVX512-BF16 (VDPBF16PS), which this CPU lacks: use fp32");
  g_precision.store(precision, std::memory_order_relaxed);
}

CpuDotPrecision cpu_dot_precision() { return g_precision.load(std::memory_order_relaxed); }

}  // namespace pconv
