// TEMPORARY (removed before landing): kernels not written yet. Each helper moves the
// ones it implements out of this file.
#include "core/cpu/cpu_backend.h"
#pragma GCC diagnostic ignored "-Wunused-parameter"

namespace pconv {

void CpuBackend::unary(UnaryOp op, const Tensor& x, Tensor& y, double alpha) { throw Error("cpu unary: pending"); }
void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& y) { throw Error("cpu binary: pending"); }
void CpuBackend::pointwise_grad(PointwiseGrad op, const Tensor& x, const Tensor& gy, Tensor& gx, double alpha) { throw Error("cpu pointwise_grad: pending"); }
void CpuBackend::sum_to(const Tensor& x, Tensor& y) { throw Error("cpu sum_to: pending"); }
void CpuBackend::gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, double alpha, double beta) { throw Error("cpu gemm: pending"); }
void CpuBackend::adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamParams& p) { throw Error("cpu adam_step: pending"); }

}  // namespace pconv
