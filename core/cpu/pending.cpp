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
void CpuBackend::conv2d_forward(const Tensor& x, const Tensor& w, Tensor& y, const Conv2dParams& p) { throw Error("cpu conv2d_forward: pending"); }
void CpuBackend::conv2d_backward_data(const Tensor& gy, const Tensor& w, Tensor& gx, const Conv2dParams& p) { throw Error("cpu conv2d_backward_data: pending"); }
void CpuBackend::conv2d_backward_weight(const Tensor& gy, const Tensor& x, Tensor& gw, const Conv2dParams& p) { throw Error("cpu conv2d_backward_weight: pending"); }
void CpuBackend::mask_apply(const Tensor& x, const Mask& mask, Tensor& y) { throw Error("cpu mask_apply: pending"); }
void CpuBackend::pconv_count(const Mask& mask, int64_t kh, int64_t kw, const Conv2dParams& p, Tensor& count) { throw Error("cpu pconv_count: pending"); }
void CpuBackend::pconv_epilogue(Tensor& y, const Tensor& count, const Tensor& bias, double window, Tensor& new_mask) { throw Error("cpu pconv_epilogue: pending"); }
void CpuBackend::pconv_grad_scale(const Tensor& gy, const Tensor& count, double window, Tensor& g) { throw Error("cpu pconv_grad_scale: pending"); }
void CpuBackend::adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamParams& p) { throw Error("cpu adam_step: pending"); }

}  // namespace pconv
