// Elementwise kernels on the CPU: unary maps, broadcasting binary ops, pointwise gradients.
#include <cmath>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/no_trapping_math.h"

namespace pconv {

namespace {

constexpr int64_t kParallelMin = 32768;  // below this, threads cost more than they save

template <typename T>
inline T apply_unary(UnaryOp op, T x, T a) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Abs: return std::abs(x);
    case UnaryOp::Sign: return T((x > 0) - (x < 0));
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return std::log(x);
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Square: return x * x;
    case UnaryOp::Relu: return !(x <= 0) ? x : T(0);  // NaN stays NaN, as PyTorch
    case UnaryOp::LeakyRelu: return x > 0 ? x : a * x;
    case UnaryOp::Step: return x > a ? T(1) : T(0);
    case UnaryOp::AddScalar: return x + a;
    case UnaryOp::MulScalar: return x * a;
    case UnaryOp::RSubScalar: return a - x;
    case UnaryOp::Clamp01: return x < 0 ? T(0) : (x > 1 ? T(1) : x);
  }
  return x;
}

template <typename T>
inline T apply_binary(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
  }
  return a;
}

// The switch sits outside the loop so each loop body vectorises.
template <typename T, typename F>
void map_n(int64_t n, F f) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) f(i);
}

// The selects whose one side is a product, outside map_n's lambdas so that they can be compiled
// without trapping math (core/cpu/no_trapping_math.h), which vectorises them; same values.
template <typename T>
PCONV_NO_TRAPPING_MATH void leaky_relu_map(const T* x, T* y, int64_t n, T a) {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0 ? x[i] : a * x[i];
}

template <typename T>
PCONV_NO_TRAPPING_MATH void pointwise_grad_map(PointwiseGrad op, const T* x, const T* g, T* o, int64_t n, T a) {
  switch (op) {
    case PointwiseGrad::Relu:
#pragma omp parallel for schedule(static) if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) o[i] = x[i] > 0 ? g[i] : T(0);
      break;
    case PointwiseGrad::LeakyRelu:
#pragma omp parallel for schedule(static) if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) o[i] = x[i] > 0 ? g[i] : a * g[i];
      break;
    case PointwiseGrad::Abs:
#pragma omp parallel for schedule(static) if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i) o[i] = x[i] > 0 ? g[i] : (x[i] < 0 ? -g[i] : T(0));
      break;
  }
}

template <typename T>
void binary_same(BinaryOp op, const T* a, const T* b, T* y, int64_t n) {
  switch (op) {
    case BinaryOp::Add: map_n<T>(n, [&](int64_t i) { y[i] = a[i] + b[i]; }); break;
    case BinaryOp::Sub: map_n<T>(n, [&](int64_t i) { y[i] = a[i] - b[i]; }); break;
    case BinaryOp::Mul: map_n<T>(n, [&](int64_t i) { y[i] = a[i] * b[i]; }); break;
    case BinaryOp::Div: map_n<T>(n, [&](int64_t i) { y[i] = a[i] / b[i]; }); break;
  }
}

// Element strides of `t` as seen through y's shape: 0 where t broadcasts.
std::vector<int64_t> broadcast_strides(const Shape& t, const Shape& y) {
  std::vector<int64_t> s(y.size(), 0);
  int64_t stride = 1;
  for (int64_t d = int64_t(y.size()) - 1; d >= 0; --d) {
    s[size_t(d)] = t[size_t(d)] == 1 ? 0 : stride;
    stride *= t[size_t(d)];
  }
  return s;
}

// General broadcast: walk y in row-major order; the innermost dim runs as a tight loop.
template <typename T>
void binary_broadcast(BinaryOp op, const Tensor& ta, const Tensor& tb, Tensor& ty) {
  const Shape& ys = ty.shape();
  const int64_t rank = int64_t(ys.size());
  auto sa = broadcast_strides(ta.shape(), ys), sb = broadcast_strides(tb.shape(), ys);
  const T* a = ta.data<T>();
  const T* b = tb.data<T>();
  T* y = ty.data<T>();
  const int64_t inner = rank ? ys.back() : 1;
  const int64_t outer = inner ? ty.numel() / inner : 0;
  const int64_t ia = rank ? sa.back() : 0, ib = rank ? sb.back() : 0;
#pragma omp parallel for schedule(static) if (ty.numel() > kParallelMin)
  for (int64_t o = 0; o < outer; ++o) {
    int64_t rem = o, oa = 0, ob = 0;
    for (int64_t d = rank - 2; d >= 0; --d) {
      int64_t idx = rem % ys[size_t(d)];
      rem /= ys[size_t(d)];
      oa += idx * sa[size_t(d)];
      ob += idx * sb[size_t(d)];
    }
    T* yr = y + o * inner;
    const T* ar = a + oa;
    const T* br = b + ob;
    for (int64_t i = 0; i < inner; ++i) yr[i] = apply_binary(op, ar[i * ia], br[i * ib]);
  }
}

void check_kernel_dtypes(const char* op, const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype())
    throw Error(std::string(op) + ": dtypes differ (" + dtype_name(a.dtype()) + " and " +
                dtype_name(b.dtype()) + ")");
}

}  // namespace

void CpuBackend::unary(UnaryOp op, const Tensor& x, Tensor& y, double alpha) {
  check_kernel_dtypes("unary", x, y);
  dispatch_float("unary", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    const T a = T(alpha);
    const int64_t n = x.numel();
    switch (op) {  // hot ones get their own vectorisable loop
      case UnaryOp::MulScalar: map_n<T>(n, [&](int64_t i) { yp[i] = xp[i] * a; }); break;
      case UnaryOp::AddScalar: map_n<T>(n, [&](int64_t i) { yp[i] = xp[i] + a; }); break;
      case UnaryOp::Relu: map_n<T>(n, [&](int64_t i) { yp[i] = !(xp[i] <= 0) ? xp[i] : T(0); }); break;
      case UnaryOp::LeakyRelu: leaky_relu_map(xp, yp, n, a); break;
      case UnaryOp::Abs: map_n<T>(n, [&](int64_t i) { yp[i] = std::abs(xp[i]); }); break;
      default: map_n<T>(n, [&](int64_t i) { yp[i] = apply_unary(op, xp[i], a); }); break;
    }
  });
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& y) {
  check_kernel_dtypes("binary", a, b);
  dispatch_float("binary", y.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (a.shape() == y.shape() && b.shape() == y.shape()) {
      binary_same<T>(op, a.data<T>(), b.data<T>(), y.data<T>(), y.numel());
    } else if (a.shape() == y.shape() && b.numel() == 1) {
      const T s = b.data<T>()[0];
      const T* ap = a.data<T>();
      T* yp = y.data<T>();
      map_n<T>(y.numel(), [&](int64_t i) { yp[i] = apply_binary(op, ap[i], s); });
    } else {
      binary_broadcast<T>(op, a, b, y);
    }
  });
}

void CpuBackend::pointwise_grad(PointwiseGrad op, const Tensor& x, const Tensor& gy, Tensor& gx,
                                double alpha) {
  check_kernel_dtypes("pointwise_grad", x, gy);
  dispatch_float("pointwise_grad", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    const T* g = gy.data<T>();
    T* o = gx.data<T>();
    const T a = T(alpha);
    const int64_t n = x.numel();
    pointwise_grad_map(op, xp, g, o, n, a);
  });
}

}  // namespace pconv
