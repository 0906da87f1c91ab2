// TEMPORARY (removed before landing): ops not written yet. Each helper moves the ones it
// implements out of this file.
#include "core/ops.h"
#pragma GCC diagnostic ignored "-Wunused-parameter"

namespace pconv {

Tensor add(const Tensor& a, const Tensor& b) { throw Error("add: pending"); }
Tensor sub(const Tensor& a, const Tensor& b) { throw Error("sub: pending"); }
Tensor mul(const Tensor& a, const Tensor& b) { throw Error("mul: pending"); }
Tensor div(const Tensor& a, const Tensor& b) { throw Error("div: pending"); }
Tensor add(const Tensor& a, double s) { throw Error("add: pending"); }
Tensor mul(const Tensor& a, double s) { throw Error("mul: pending"); }
Tensor rsub(double s, const Tensor& a) { throw Error("rsub: pending"); }
Tensor neg(const Tensor& a) { throw Error("neg: pending"); }
Tensor abs(const Tensor& a) { throw Error("abs: pending"); }
Tensor exp(const Tensor& a) { throw Error("exp: pending"); }
Tensor log(const Tensor& a) { throw Error("log: pending"); }
Tensor sqrt(const Tensor& a) { throw Error("sqrt: pending"); }
Tensor square(const Tensor& a) { throw Error("square: pending"); }
Tensor relu(const Tensor& a) { throw Error("relu: pending"); }
Tensor leaky_relu(const Tensor& a, double slope) { throw Error("leaky_relu: pending"); }
Tensor clamp01(const Tensor& a) { throw Error("clamp01: pending"); }
Tensor step(const Tensor& a, double threshold) { throw Error("step: pending"); }
Shape broadcast_shape(const char* op, const Shape& a, const Shape& b) { throw Error("broadcast_shape: pending"); }
Tensor sum_to_shape(const Tensor& g, const Shape& shape) { throw Error("sum_to_shape: pending"); }
Tensor sum(const Tensor& a) { throw Error("sum: pending"); }
Tensor sum(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) { throw Error("sum: pending"); }
Tensor mean(const Tensor& a) { throw Error("mean: pending"); }
Tensor mean(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) { throw Error("mean: pending"); }
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) { throw Error("matmul: pending"); }
Tensor transpose(const Tensor& a, int64_t d0, int64_t d1) { throw Error("transpose: pending"); }

}  // namespace pconv
