// Batched GEMM on the CPU through Eigen (row-major maps over the raw buffers).
#include <Eigen/Dense>
#include <omp.h>

#include "core/cpu/cpu_backend.h"

namespace pconv {

void CpuBackend::gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                      double alpha, double beta) {
  if (a.dim() != 3 || b.dim() != 3 || c.dim() != 3)
    throw Error("gemm: operands must be rank 3, got " + shape_str(a.shape()) + ", " +
                shape_str(b.shape()) + ", " + shape_str(c.shape()));
  const int64_t batch = c.size(0);
  const int64_t m = c.size(1), n = c.size(2);
  const int64_t k = trans_a ? a.size(1) : a.size(2);
  const int64_t am = trans_a ? a.size(2) : a.size(1);
  const int64_t bk = trans_b ? b.size(2) : b.size(1), bn = trans_b ? b.size(1) : b.size(2);
  if (am != m || bk != k || bn != n || (a.size(0) != batch && a.size(0) != 1) ||
      (b.size(0) != batch && b.size(0) != 1))
    throw Error("gemm: shapes " + shape_str(a.shape()) + (trans_a ? "ᵀ" : "") + " × " +
                shape_str(b.shape()) + (trans_b ? "ᵀ" : "") + " → " + shape_str(c.shape()) +
                " do not agree");
  dispatch_float("gemm", c.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const int64_t sa = a.size(0) == 1 ? 0 : a.size(1) * a.size(2);
    const int64_t sb = b.size(0) == 1 ? 0 : b.size(1) * b.size(2);
    auto one = [&](int64_t i) {
      Eigen::Map<const Mat> A(a.data<T>() + i * sa, a.size(1), a.size(2));
      Eigen::Map<const Mat> B(b.data<T>() + i * sb, b.size(1), b.size(2));
      Eigen::Map<Mat> C(c.data<T>() + i * m * n, m, n);
      if (beta == 0) C.setZero();
      else if (beta != 1) C *= T(beta);
      const T al = T(alpha);
      if (!trans_a && !trans_b) C.noalias() += al * A * B;
      else if (trans_a && !trans_b) C.noalias() += al * A.transpose() * B;
      else if (!trans_a && trans_b) C.noalias() += al * A * B.transpose();
      else C.noalias() += al * A.transpose() * B.transpose();
    };
    // Many small products: one per thread. Few large ones: Eigen threads each product.
    if (batch >= omp_get_max_threads() && m * n * k < (int64_t(1) << 24)) {
#pragma omp parallel for schedule(dynamic)
      for (int64_t i = 0; i < batch; ++i) one(i);
    } else {
      for (int64_t i = 0; i < batch; ++i) one(i);
    }
  });
}

}  // namespace pconv
