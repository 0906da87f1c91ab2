// Unary ops, broadcasting binary ops and the pointwise nonlinearities' backward (the
// formulas of core/backend.h's UnaryOp / BinaryOp / PointwiseGrad comments).
#include "cuda/kernel_util.cuh"

namespace pconv {

namespace {

template <typename T>
__device__ T unary_value(UnaryOp op, T x, T alpha) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Abs: return dev_abs(x);
    case UnaryOp::Sign: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    case UnaryOp::Exp: return dev_exp(x);
    case UnaryOp::Log: return dev_log(x);
    case UnaryOp::Sqrt: return dev_sqrt(x);
    case UnaryOp::Square: return x * x;
    case UnaryOp::Relu: return !(x <= T(0)) ? x : T(0);  // NaN stays NaN, as PyTorch
    case UnaryOp::LeakyRelu: return x > T(0) ? x : alpha * x;
    case UnaryOp::Step: return x > alpha ? T(1) : T(0);
    case UnaryOp::AddScalar: return x + alpha;
    case UnaryOp::MulScalar: return x * alpha;
    case UnaryOp::RSubScalar: return alpha - x;
    case UnaryOp::Clamp01: return x < T(0) ? T(0) : (x > T(1) ? T(1) : x);
  }
  return x;
}

template <typename T>
__global__ void unary_kernel(UnaryOp op, const T* x, T* y, int64_t n, T alpha) {
  PCONV_GRID_STRIDE(i, n) y[i] = unary_value(op, x[i], alpha);
}

template <typename T>
__device__ T binary_value(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
  }
  return a;
}

template <typename T>
__global__ void binary_same_shape_kernel(BinaryOp op, const T* a, const T* b, T* y, int64_t n) {
  PCONV_GRID_STRIDE(i, n) y[i] = binary_value(op, a[i], b[i]);
}

// y's dims after merging, with a's and b's element strides (0 where they broadcast).
constexpr int kMaxRank = 8;
struct BroadcastPlan {
  int rank = 0;
  int64_t size[kMaxRank];
  int64_t stride_a[kMaxRank];
  int64_t stride_b[kMaxRank];
};

template <typename T>
__global__ void binary_broadcast_kernel(BinaryOp op, const T* a, const T* b, T* y, int64_t n,
                                        BroadcastPlan plan) {
  PCONV_GRID_STRIDE(i, n) {
    int64_t rest = i, ia = 0, ib = 0;
    for (int d = plan.rank - 1; d >= 0; --d) {
      const int64_t k = rest % plan.size[d];
      rest /= plan.size[d];
      ia += k * plan.stride_a[d];
      ib += k * plan.stride_b[d];
    }
    y[i] = binary_value(op, a[ia], b[ib]);
  }
}

// Strides of `s` (right-aligned against y) as seen from y's index space; throws when a dim
// is neither 1 nor y's.
std::vector<int64_t> broadcast_strides(const Shape& s, const Shape& y, const char* arg) {
  const size_t r = y.size();
  if (s.size() > r)
    throw Error(std::string("binary: ") + arg + " " + shape_str(s) + " has more dims than y " +
                shape_str(y));
  std::vector<int64_t> stride(r, 0);
  int64_t running = 1;
  for (size_t k = 0; k < s.size(); ++k) {
    const size_t ds = s.size() - 1 - k, dy = r - 1 - k;
    if (s[ds] == y[dy]) {
      stride[dy] = s[ds] == 1 ? 0 : running;
    } else if (s[ds] != 1) {
      throw Error(std::string("binary: ") + arg + " " + shape_str(s) + " does not broadcast to y " +
                  shape_str(y));
    }
    running *= s[ds];
  }
  return stride;
}

BroadcastPlan make_plan(const Shape& a, const Shape& b, const Shape& y) {
  const auto sa = broadcast_strides(a, y, "a"), sb = broadcast_strides(b, y, "b");
  // Drop size-1 dims of y, then merge neighbours that are contiguous for both operands.
  std::vector<int64_t> size, ta, tb;
  for (size_t d = 0; d < y.size(); ++d) {
    if (y[d] == 1) continue;
    if (!size.empty() && ta.back() == sa[d] * y[d] && tb.back() == sb[d] * y[d]) {
      size.back() *= y[d];
      ta.back() = sa[d];
      tb.back() = sb[d];
    } else {
      size.push_back(y[d]);
      ta.push_back(sa[d]);
      tb.push_back(sb[d]);
    }
  }
  if (size.size() > size_t(kMaxRank))
    throw Error("binary: broadcasting " + shape_str(a) + " with " + shape_str(b) + " to " +
                shape_str(y) + " needs more than 8 dims");
  BroadcastPlan plan;
  plan.rank = int(size.size());
  for (int d = 0; d < plan.rank; ++d) {
    plan.size[d] = size[size_t(d)];
    plan.stride_a[d] = ta[size_t(d)];
    plan.stride_b[d] = tb[size_t(d)];
  }
  return plan;
}

template <typename T>
__global__ void pointwise_grad_kernel(PointwiseGrad op, const T* x, const T* gy, T* gx, int64_t n,
                                      T alpha) {
  PCONV_GRID_STRIDE(i, n) {
    const T v = x[i], g = gy[i];
    switch (op) {
      case PointwiseGrad::Relu: gx[i] = v > T(0) ? g : T(0); break;
      case PointwiseGrad::LeakyRelu: gx[i] = v > T(0) ? g : alpha * g; break;
      case PointwiseGrad::Abs: gx[i] = v > T(0) ? g : (v < T(0) ? -g : T(0)); break;
    }
  }
}

}  // namespace

void CudaBackend::unary(UnaryOp op, const Tensor& x, Tensor& y, double alpha) {
  check_numel("unary", x, "x", y, "y");
  const int64_t n = x.numel();
  if (n == 0) return;
  cuda_dispatch_float("unary", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    unary_kernel<T><<<blocks_for(n), kThreads, 0, stream_>>>(op, x.data<T>(), y.data<T>(), n,
                                                             T(alpha));
  });
  CUDA_CHECK_LAUNCH("unary op " + std::to_string(int(op)) + " on " + shapes_of(x));
}

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& y) {
  const int64_t n = y.numel();
  if (n == 0) return;
  const bool same = a.shape() == y.shape() && b.shape() == y.shape();
  const BroadcastPlan plan = same ? BroadcastPlan{} : make_plan(a.shape(), b.shape(), y.shape());
  cuda_dispatch_float("binary", y.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if (same)
      binary_same_shape_kernel<T><<<blocks_for(n), kThreads, 0, stream_>>>(
          op, a.data<T>(), b.data<T>(), y.data<T>(), n);
    else
      binary_broadcast_kernel<T><<<blocks_for(n), kThreads, 0, stream_>>>(
          op, a.data<T>(), b.data<T>(), y.data<T>(), n, plan);
  });
  CUDA_CHECK_LAUNCH("binary op " + std::to_string(int(op)) + " on a " + shapes_of(a) + ", b " +
                    shapes_of(b) + " -> y " + shapes_of(y));
}

void CudaBackend::pointwise_grad(PointwiseGrad op, const Tensor& x, const Tensor& gy, Tensor& gx,
                                 double alpha) {
  check_numel("pointwise_grad", x, "x", gy, "gy");
  check_numel("pointwise_grad", x, "x", gx, "gx");
  const int64_t n = x.numel();
  if (n == 0) return;
  cuda_dispatch_float("pointwise_grad", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    pointwise_grad_kernel<T><<<blocks_for(n), kThreads, 0, stream_>>>(
        op, x.data<T>(), gy.data<T>(), gx.data<T>(), n, T(alpha));
  });
  CUDA_CHECK_LAUNCH("pointwise_grad on " + shapes_of(x));
}

}  // namespace pconv
