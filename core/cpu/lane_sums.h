#pragma once
// Per-channel sums in 8 double lanes, shared by BatchNorm's kernels (core/cpu/batchnorm.cpp) and
// the fused BatchNorm + activation (core/cpu/batchnorm_activation.cpp), which must give the same
// sums bit for bit.
#include <cstdint>

namespace pconv {

// Σ a(i) and Σ b(i) over i in [0, n), each in 8 independent double lanes: one accumulator
// is a serial chain the compiler may not reorder; 8 lanes vectorise and keep the same
// accuracy (every partial sum is still in double).
struct Sums {
  double a = 0, b = 0;
};
template <typename FA, typename FB>
Sums lane_sums(int64_t n, FA&& fa, FB&& fb) {
  constexpr int kLanes = 8;
  double la[kLanes] = {}, lb[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      la[k] += fa(i + k);
      lb[k] += fb(i + k);
    }
  for (; i < n; ++i) {
    la[0] += fa(i);
    lb[0] += fb(i);
  }
  Sums s;
  for (int k = 0; k < kLanes; ++k) s.a += la[k], s.b += lb[k];
  return s;
}
template <typename F>
double lane_sum(int64_t n, F&& f) {
  return lane_sums(n, f, [](int64_t) { return 0.0; }).a;
}

}  // namespace pconv
