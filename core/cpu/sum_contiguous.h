#pragma once
// The sum of a contiguous run in double, shared by the reductions (core/cpu/reduce.cpp) and the
// fused kernels that must give the same sums bit for bit (core/cpu/bias_activation.cpp).
#include <cstdint>

namespace pconv {

template <typename T>
double sum_contiguous(const T* p, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;  // four lanes: vectorises and shortens the add chain
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) s0 += p[i], s1 += p[i + 1], s2 += p[i + 2], s3 += p[i + 3];
  for (; i < n; ++i) s0 += p[i];
  return (s0 + s1) + (s2 + s3);
}

}  // namespace pconv
