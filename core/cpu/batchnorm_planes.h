#pragma once
// One N×C plane's share of batch_norm_backward, shared by BatchNorm's kernel (core/cpu/batchnorm.cpp)
// and the fused BatchNorm + activation (core/cpu/batchnorm_activation.cpp). Compiled once, in
// batchnorm.cpp, and never inlined: whether the compiler contracts a product and a sum into an
// FMA differs between a vectorised loop and its tail and between call sites, so only the same
// machine code gives both kernels the same sums bit for bit.
#include <cstdint>

namespace pconv {

// sum_gy += Σ g, sum_gy_xhat += istd · Σ g·(x - m) over the plane's n values.
template <typename T>
void batch_norm_grad_sums(const T* g, const T* x, int64_t n, double m, double istd, double& sum_gy,
                          double& sum_gy_xhat);
// gx = k·(g - (sum_gy + x̂·sum_gy_xhat)/count) with batch statistics, else k·g; x̂ = (x - m)·istd.
template <typename T>
void batch_norm_grad_input(const T* g, const T* x, T* gx, int64_t n, double m, double istd, double k,
                           double sum_gy, double sum_gy_xhat, double count, bool batch_stats);

extern template void batch_norm_grad_sums<float>(const float*, const float*, int64_t, double, double, double&,
                                                 double&);
extern template void batch_norm_grad_sums<double>(const double*, const double*, int64_t, double, double, double&,
                                                  double&);
extern template void batch_norm_grad_input<float>(const float*, const float*, float*, int64_t, double, double, double,
                                                  double, double, double, bool);
extern template void batch_norm_grad_input<double>(const double*, const double*, double*, int64_t, double, double,
                                                   double, double, double, double, bool);

}  // namespace pconv
