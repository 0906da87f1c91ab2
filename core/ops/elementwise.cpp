// Elementwise ops, forward and backward side by side. Binary ops broadcast numpy-style;
// the gradient of a broadcast input is the output gradient summed back to its shape.
#include "core/ops.h"

namespace pconv {

namespace {

void check_pair(const char* op, const Tensor& a, const Tensor& b) {
  check_defined(op, "a", a);
  check_defined(op, "b", b);
  check_same_device(op, a, "a", b, "b");
  check_same_dtype(op, a, "a", b, "b");
}

// A view of t with leading 1s so it has `rank` dims (the backend wants equal ranks).
Tensor with_rank(const Tensor& t, size_t rank) {
  if (t.shape().size() == rank) return t.detach();
  Shape s(rank - t.shape().size(), 1);
  s.insert(s.end(), t.shape().begin(), t.shape().end());
  return t.detach().reshape(s);
}

Tensor binary_op(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  check_pair(name, a, b);
  Shape ys = broadcast_shape(name, a.shape(), b.shape());
  Tensor y = Tensor::empty(ys, a.dtype(), a.device());
  backend_of(a).binary(op, with_rank(a, ys.size()), with_rank(b, ys.size()), y);
  // add/sub need only the shapes; keeping the inputs alive would hold activations for nothing.
  const bool keep = op == BinaryOp::Mul || op == BinaryOp::Div;
  Tensor ad = keep ? a.detach() : Tensor(), bd = keep ? b.detach() : Tensor();
  return record(y, name, {a, b}, [op, ad, bd, as = a.shape(), bs = b.shape()](const Node& n,
                                                                            const Tensor& gy) {
    Tensor ga, gb;
    switch (op) {
      case BinaryOp::Add:
        if (n.needs_grad(0)) ga = sum_to_shape(gy, as);
        if (n.needs_grad(1)) gb = sum_to_shape(gy, bs);
        break;
      case BinaryOp::Sub:
        if (n.needs_grad(0)) ga = sum_to_shape(gy, as);
        if (n.needs_grad(1)) gb = sum_to_shape(neg(gy), bs);
        break;
      case BinaryOp::Mul:
        if (n.needs_grad(0)) ga = sum_to_shape(mul(gy, bd), as);
        if (n.needs_grad(1)) gb = sum_to_shape(mul(gy, ad), bs);
        break;
      case BinaryOp::Div:
        if (n.needs_grad(0)) ga = sum_to_shape(div(gy, bd), as);
        // d(a/b)/db = -a / b²
        if (n.needs_grad(1)) gb = sum_to_shape(neg(div(mul(gy, ad), mul(bd, bd))), bs);
        break;
    }
    return std::vector<Tensor>{ga, gb};
  });
}

Tensor unary_raw(UnaryOp op, const Tensor& x, double alpha) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_of(x).unary(op, x, y, alpha);
  return y;
}

Tensor pointwise(PointwiseGrad g, const char* name, UnaryOp op, const Tensor& x, double alpha) {
  check_defined(name, "x", x);
  Tensor y = unary_raw(op, x, alpha);
  return record(y, name, {x}, [g, x, alpha](const Node&, const Tensor& gy) {
    Tensor gx = Tensor::empty(x.shape(), x.dtype(), x.device());
    backend_of(x).pointwise_grad(g, x, gy, gx, alpha);
    return std::vector<Tensor>{gx};
  });
}

}  // namespace

Shape broadcast_shape(const char* op, const Shape& a, const Shape& b) {
  const size_t rank = std::max(a.size(), b.size());
  Shape y(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1)
      throw Error(std::string(op) + ": shapes " + shape_str(a) + " and " + shape_str(b) +
                  " do not broadcast");
    y[i] = da == 1 ? db : da;
  }
  return y;
}

Tensor sum_to_shape(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  if (shape.size() > g.shape().size())
    throw Error("sum_to_shape: cannot reduce " + shape_str(g.shape()) + " to " + shape_str(shape));
  Shape keep = g.shape();  // same rank as g, 1 where shape broadcasts
  const size_t lead = g.shape().size() - shape.size();
  for (size_t i = 0; i < keep.size(); ++i) {
    int64_t want = i < lead ? 1 : shape[i - lead];
    if (want != 1 && want != keep[i])
      throw Error("sum_to_shape: cannot reduce " + shape_str(g.shape()) + " to " + shape_str(shape));
    keep[i] = want;
  }
  Tensor r = Tensor::empty(keep, g.dtype(), g.device());
  backend_of(g).sum_to(g.detach(), r);
  return r.reshape(shape);
}

Tensor add(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Add, "add", a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Sub, "sub", a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Mul, "mul", a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Div, "div", a, b); }

Tensor add(const Tensor& a, double s) {
  check_defined("add", "a", a);
  return record(unary_raw(UnaryOp::AddScalar, a, s), "add", {a},
                [](const Node&, const Tensor& gy) { return std::vector<Tensor>{gy}; });
}

Tensor mul(const Tensor& a, double s) {
  check_defined("mul", "a", a);
  return record(unary_raw(UnaryOp::MulScalar, a, s), "mul", {a},
                [s](const Node&, const Tensor& gy) { return std::vector<Tensor>{mul(gy, s)}; });
}

Tensor rsub(double s, const Tensor& a) {
  check_defined("rsub", "a", a);
  return record(unary_raw(UnaryOp::RSubScalar, a, s), "rsub", {a},
                [](const Node&, const Tensor& gy) { return std::vector<Tensor>{neg(gy)}; });
}

Tensor neg(const Tensor& a) {
  check_defined("neg", "a", a);
  return record(unary_raw(UnaryOp::Neg, a, 0), "neg", {a},
                [](const Node&, const Tensor& gy) { return std::vector<Tensor>{neg(gy)}; });
}

Tensor abs(const Tensor& a) { return pointwise(PointwiseGrad::Abs, "abs", UnaryOp::Abs, a, 0); }
Tensor relu(const Tensor& a) { return pointwise(PointwiseGrad::Relu, "relu", UnaryOp::Relu, a, 0); }
Tensor leaky_relu(const Tensor& a, double slope) {
  return pointwise(PointwiseGrad::LeakyRelu, "leaky_relu", UnaryOp::LeakyRelu, a, slope);
}

// In place: the backend's elementwise kernels read each element before writing it.
void relu_(Tensor& x) {
  check_grad_mode_off("relu_");
  check_defined("relu_", "x", x);
  backend_of(x).unary(UnaryOp::Relu, x, x, 0);
}
void leaky_relu_(Tensor& x, double slope) {
  check_grad_mode_off("leaky_relu_");
  check_defined("leaky_relu_", "x", x);
  backend_of(x).unary(UnaryOp::LeakyRelu, x, x, slope);
}

Tensor exp(const Tensor& a) {
  check_defined("exp", "a", a);
  Tensor y = unary_raw(UnaryOp::Exp, a, 0);
  Tensor yd = y.detach();
  return record(y, "exp", {a},
                [yd](const Node&, const Tensor& gy) { return std::vector<Tensor>{mul(gy, yd)}; });
}

Tensor log(const Tensor& a) {
  check_defined("log", "a", a);
  return record(unary_raw(UnaryOp::Log, a, 0), "log", {a}, [a](const Node&, const Tensor& gy) {
    return std::vector<Tensor>{div(gy, a.detach())};
  });
}

Tensor sqrt(const Tensor& a) {
  check_defined("sqrt", "a", a);
  Tensor y = unary_raw(UnaryOp::Sqrt, a, 0);
  Tensor yd = y.detach();
  return record(y, "sqrt", {a}, [yd](const Node&, const Tensor& gy) {
    return std::vector<Tensor>{div(mul(gy, 0.5), yd)};  // d√a = 1 / (2√a)
  });
}

Tensor square(const Tensor& a) {
  check_defined("square", "a", a);
  return record(unary_raw(UnaryOp::Square, a, 0), "square", {a},
                [a](const Node&, const Tensor& gy) {
                  return std::vector<Tensor>{mul(gy, mul(a.detach(), 2.0))};
                });
}

Tensor clamp01(const Tensor& a) {
  check_defined("clamp01", "a", a);
  Tensor y = unary_raw(UnaryOp::Clamp01, a, 0);
  return record(y, "clamp01", {a}, [a](const Node&, const Tensor& gy) {
    // gradient only strictly inside (0, 1): [a > 0] · [1 - a > 0]
    Tensor inside = mul(unary_raw(UnaryOp::Step, a.detach(), 0),
                        unary_raw(UnaryOp::Step, unary_raw(UnaryOp::RSubScalar, a.detach(), 1), 0));
    return std::vector<Tensor>{mul(gy, inside)};
  });
}

Tensor step(const Tensor& a, double threshold) {
  check_defined("step", "a", a);
  return unary_raw(UnaryOp::Step, a.detach(), threshold);  // piecewise constant: no gradient
}

}  // namespace pconv
