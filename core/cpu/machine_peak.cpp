#include "core/cpu/machine_peak.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>

#include "core/cpu/dot_precision.h"

namespace pconv {

namespace {

std::atomic<double> g_conv_flops{0.0};

// Runs `body(iterations)` on every thread at once until one run takes about `seconds`; returns
// the best GFLOP/s of three such runs, `flops_per_iteration` counted per thread.
template <typename Body>
double peak(Body body, double flops_per_iteration, double seconds) {
  using clock = std::chrono::steady_clock;
  int64_t iterations = 1 << 14;
  double best = 0;
  for (int counted = 0, tries = 0; counted < 3 && tries < 40; ++tries) {
    int threads = 1;
    const auto t0 = clock::now();
#pragma omp parallel
    {
#pragma omp single
      threads = omp_get_num_threads();
      body(iterations);
    }
    const double s = std::chrono::duration<double>(clock::now() - t0).count();
    if (s < seconds / 4 && iterations < (int64_t(1) << 40)) {  // too short to time: grow, do not count it
      iterations *= 4;
      continue;
    }
    best = std::max(best, flops_per_iteration * double(iterations) * threads / s * 1e-9);
    ++counted;
  }
  return best;
}

// The sums must leave the loop, or the compiler drops it.
std::atomic<float> g_sink{0.0f};

}  // namespace

double measured_f32_fma_peak(double seconds) {
#if defined(__AVX2__) && defined(__FMA__)
  // 12 independent accumulators: enough to cover FMA latency × ports on current x86 cores.
  constexpr int kAcc = 12;
  auto body = [](int64_t n) {
    __m256 acc[kAcc];
    for (int i = 0; i < kAcc; ++i) acc[i] = _mm256_set1_ps(float(i) * 1e-3f);
    const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-4f);
    for (int64_t it = 0; it < n; ++it)
      for (int i = 0; i < kAcc; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    float s = 0;
    for (int i = 0; i < kAcc; ++i) s += _mm256_cvtss_f32(acc[i]);
    g_sink.store(s, std::memory_order_relaxed);
  };
  return peak(body, 2.0 * 8 * kAcc, seconds);
#else
  constexpr int kAcc = 8;
  auto body = [](int64_t n) {
    float acc[kAcc];
    for (int i = 0; i < kAcc; ++i) acc[i] = float(i) * 1e-3f;
    for (int64_t it = 0; it < n; ++it)
      for (int i = 0; i < kAcc; ++i) acc[i] = acc[i] * 0.999f + 1e-4f;
    float s = 0;
    for (float v : acc) s += v;
    g_sink.store(s, std::memory_order_relaxed);
  };
  return peak(body, 2.0 * kAcc, seconds);
#endif
}

namespace {

// Independent sums in the bf16 loop, as in the f32 one.
constexpr int kBf16Acc = 12;

// AVX-512 only behind a target attribute, as in gemm_bf16.cpp: the rest of the file stays AVX2.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void bf16_dot_loop(int64_t n) {
  constexpr int kAcc = kBf16Acc;
  __m512 acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_set1_ps(float(i) * 1e-3f);
  // Pairs of bf16 1.0 (0x3F80) and 2^-10 (0x3A80): sums grow slowly, never overflow.
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3A803F80), b = (__m512bh)_mm512_set1_epi32(0x3A803A80);
  for (int64_t it = 0; it < n; ++it)
    for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  // Lane 0 of each sum is enough to keep the loop; _mm512_reduce_add_ps would trip GCC 12's
  // -Wuninitialized on its own _mm256_undefined_pd().
  float s = 0;
  for (int i = 0; i < kAcc; ++i) s += _mm512_cvtss_f32(acc[i]);
  g_sink.store(s, std::memory_order_relaxed);
}

}  // namespace

double measured_bf16_dot_peak(double seconds) {
  if (!cpu_has_bf16_dot()) return 0;
  // VDPBF16PS: 16 lanes, each two products and two adds.
  return peak([](int64_t n) { bf16_dot_loop(n); }, 4.0 * 16 * kBf16Acc, seconds);
}

void add_conv_flops(double flops) { g_conv_flops.fetch_add(flops, std::memory_order_relaxed); }
double conv_flops() { return g_conv_flops.load(std::memory_order_relaxed); }
void reset_conv_flops() { g_conv_flops.store(0.0, std::memory_order_relaxed); }

}  // namespace pconv
