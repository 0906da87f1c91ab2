// GEMM through cuBLAS. pconv's matrices are row-major; cuBLAS is column-major, where a
// row-major R×C matrix reads as its C×R transpose. So c = op(a)·op(b) is computed as
// cᵀ = op(b)ᵀ·op(a)ᵀ: swap the operands, keep each one's transpose flag, and use the stored
// row length as the leading dimension.
#include <cublas_v2.h>

#include <climits>

#include "cuda/check.h"
#include "cuda/cuda_backend.h"

namespace pconv {

cublasContext* create_cublas_handle(cudaStream_t stream, bool allow_tf32) {
  cublasHandle_t h = nullptr;
  CUBLAS_CHECK(cublasCreate(&h));
  CUBLAS_CHECK(cublasSetStream(h, stream));
  // DEFAULT keeps f32 in full f32 precision (no TF32), so the GPU matches the CPU closely.
  CUBLAS_CHECK(cublasSetMathMode(h, allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  return h;
}

void destroy_cublas_handle(cublasContext* h) noexcept {
  if (h) cublasDestroy(h);
}

namespace {

int checked_int(int64_t v, const char* what, const Tensor& a, const Tensor& b) {
  if (v > INT_MAX)
    throw Error(std::string("gemm: ") + what + " " + std::to_string(v) +
                " exceeds cuBLAS's int range for a " + shape_str(a.shape()) + ", b " +
                shape_str(b.shape()));
  return int(v);
}

}  // namespace

void CudaBackend::gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                       double alpha, double beta) {
  if (a.dim() != 3 || b.dim() != 3 || c.dim() != 3)
    throw Error("gemm: a " + shape_str(a.shape()) + ", b " + shape_str(b.shape()) + ", c " +
                shape_str(c.shape()) + " must all be [batch, rows, cols]");
  const int64_t batch = c.size(0);
  const int64_t m = trans_a ? a.size(2) : a.size(1), k = trans_a ? a.size(1) : a.size(2);
  const int64_t kb = trans_b ? b.size(2) : b.size(1), n = trans_b ? b.size(1) : b.size(2);
  const bool batches_ok = (a.size(0) == batch || a.size(0) == 1) && (b.size(0) == batch || b.size(0) == 1);
  if (k != kb || c.size(1) != m || c.size(2) != n || !batches_ok)
    throw Error("gemm: a " + shape_str(a.shape()) + (trans_a ? "ᵀ" : "") + " times b " +
                shape_str(b.shape()) + (trans_b ? "ᵀ" : "") + " does not give c " +
                shape_str(c.shape()));
  if (a.dtype() != b.dtype() || a.dtype() != c.dtype())
    throw Error(std::string("gemm: dtypes ") + dtype_name(a.dtype()) + ", " + dtype_name(b.dtype()) +
                ", " + dtype_name(c.dtype()) + " differ");
  if (c.numel() == 0) return;
  if (k == 0) {  // an empty sum: c = beta · c
    if (beta == 0.0)
      fill(c, 0.0);
    else
      unary(UnaryOp::MulScalar, c, c, beta);
    return;
  }
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int im = checked_int(m, "rows", a, b), in = checked_int(n, "cols", a, b);
  const int ik = checked_int(k, "inner size", a, b), ib = checked_int(batch, "batch", a, b);
  const int lda = checked_int(a.size(2), "row length", a, b);
  const int ldb = checked_int(b.size(2), "row length", a, b);
  // A batch of 1 broadcasts: stride 0 reuses the one matrix for every c[b].
  const long long stride_a = a.size(0) == 1 ? 0 : a.size(1) * a.size(2);
  const long long stride_b = b.size(0) == 1 ? 0 : b.size(1) * b.size(2);
  const long long stride_c = m * n;
  if (c.dtype() == DType::F32) {
    const float al = float(alpha), be = float(beta);
    CUBLAS_CHECK(cublasSgemmStridedBatched(cublas_, op_b, op_a, in, im, ik, &al, b.data<float>(), ldb,
                                           stride_b, a.data<float>(), lda, stride_a, &be,
                                           c.data<float>(), in, stride_c, ib));
  } else if (c.dtype() == DType::F64) {
    CUBLAS_CHECK(cublasDgemmStridedBatched(cublas_, op_b, op_a, in, im, ik, &alpha, b.data<double>(),
                                           ldb, stride_b, a.data<double>(), lda, stride_a, &beta,
                                           c.data<double>(), in, stride_c, ib));
  } else {
    throw Error(std::string("gemm: the CUDA backend computes in f32 or f64, got ") +
                dtype_name(c.dtype()));
  }
}

}  // namespace pconv
