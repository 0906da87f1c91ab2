// Matrix products (2-D and batched 3-D) and transpose. Gram matrices of the style loss are
// matmul(f, f, false, true) on [N, C, H·W] views.
#include <numeric>

#include "core/ops.h"

namespace pconv {

namespace {

Tensor as3(const Tensor& t) { return t.dim() == 3 ? t.detach() : t.detach().reshape({1, t.size(0), t.size(1)}); }

// One GEMM with an optional accumulate: c = op(a) op(b).
Tensor gemm_new(const Tensor& a, bool ta, const Tensor& b, bool tb, int64_t batch) {
  Tensor a3 = as3(a), b3 = as3(b);
  int64_t m = ta ? a3.size(2) : a3.size(1), n = tb ? b3.size(1) : b3.size(2);
  Tensor c = Tensor::empty({batch, m, n}, a.dtype(), a.device());
  backend_of(a).gemm(a3, ta, b3, tb, c, 1.0, 0.0);
  return c;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  check_defined("matmul", "a", a);
  check_defined("matmul", "b", b);
  check_same_device("matmul", a, "a", b, "b");
  check_same_dtype("matmul", a, "a", b, "b");
  if (a.dim() < 2 || a.dim() > 3 || b.dim() < 2 || b.dim() > 3)
    throw Error("matmul: operands must be 2-D or 3-D, got " + shape_str(a.shape()) + " and " +
                shape_str(b.shape()));
  const int64_t ba = a.dim() == 3 ? a.size(0) : 1, bb = b.dim() == 3 ? b.size(0) : 1;
  if (ba != bb && ba != 1 && bb != 1)
    throw Error("matmul: batch sizes differ: " + shape_str(a.shape()) + " and " + shape_str(b.shape()));
  const int64_t ka = trans_a ? a.size(-2) : a.size(-1), kb = trans_b ? b.size(-1) : b.size(-2);
  if (ka != kb)
    throw Error("matmul: inner dimensions differ: " + shape_str(a.shape()) + (trans_a ? "ᵀ" : "") +
                " × " + shape_str(b.shape()) + (trans_b ? "ᵀ" : ""));
  const int64_t batch = std::max(ba, bb);
  const bool batched = a.dim() == 3 || b.dim() == 3;
  Tensor c = gemm_new(a, trans_a, b, trans_b, batch);
  if (!batched) c = c.reshape({c.size(1), c.size(2)});
  Tensor ad = a.detach(), bd = b.detach();
  return record(c, "matmul", {a, b}, [ad, bd, trans_a, trans_b, batch, batched](const Node& n,
                                                                               const Tensor& gy) {
    Tensor g = gy.dim() == 3 ? gy : gy.reshape({1, gy.size(0), gy.size(1)});
    Tensor ga, gb;
    // C = A B: dA = dC Bᵀ, dB = Aᵀ dC; with transposes the roles swap accordingly.
    if (n.needs_grad(0)) {
      ga = trans_a ? gemm_new(bd, trans_b, g, true, batch) : gemm_new(g, false, bd, !trans_b, batch);
      if (ad.dim() == 2 || (ad.size(0) == 1 && batch > 1)) ga = sum(ga, {0}, ad.dim() == 3);
      ga = ga.reshape(ad.shape());
    }
    if (n.needs_grad(1)) {
      gb = trans_b ? gemm_new(g, true, ad, trans_a, batch) : gemm_new(ad, !trans_a, g, false, batch);
      if (bd.dim() == 2 || (bd.size(0) == 1 && batch > 1)) gb = sum(gb, {0}, bd.dim() == 3);
      gb = gb.reshape(bd.shape());
    }
    (void)batched;
    return std::vector<Tensor>{ga, gb};
  });
}

Tensor transpose(const Tensor& a, int64_t d0, int64_t d1) {
  check_defined("transpose", "a", a);
  const int64_t r = a.dim();
  if (d0 < 0) d0 += r;
  if (d1 < 0) d1 += r;
  if (d0 < 0 || d1 < 0 || d0 >= r || d1 >= r)
    throw Error("transpose: dims out of range for shape " + shape_str(a.shape()));
  if (d0 == d1) return a.clone();
  if (d0 > d1) std::swap(d0, d1);
  Shape s = a.shape(), t = s;
  bool between_ones = true;
  for (int64_t d = d0 + 1; d < d1; ++d) between_ones &= s[size_t(d)] == 1;
  if (!between_ones) {
    // Dims with others between them: a chain of adjacent swaps (d1 moves down to d0, then
    // the old d0, now at d0 + 1, moves up to d1); autograd chains the backward the same way.
    Tensor y = a;
    for (int64_t d = d1; d > d0; --d) y = transpose(y, d - 1, d);
    for (int64_t d = d0 + 1; d < d1; ++d) y = transpose(y, d, d + 1);
    return y;
  }
  // [outer, A, mid, B, inner] → [outer, B, mid, A, inner] with mid all 1s, by slices.
  std::swap(t[size_t(d0)], t[size_t(d1)]);
  Tensor y = Tensor::empty(t, a.dtype(), a.device());
  // Copy one index of d1 at a time: y[..., j, ..., :, ...] = a[..., :, ..., j, ...] via slices.
  for (int64_t j = 0; j < s[size_t(d1)]; ++j) {
    Tensor src = slice(a.detach(), d1, j, j + 1);        // [.., A, .., 1, ..]
    Shape moved = t;
    moved[size_t(d0)] = 1;
    moved[size_t(d1)] = s[size_t(d0)];
    // src has shape with d0 = A and d1 = 1; with only 1s between them, moving A to d1 is a
    // reshape.
    backend_of(a).copy_into_slice(src.reshape(moved), y, d0, j);
  }
  return record(y, "transpose", {a}, [d0, d1](const Node&, const Tensor& gy) {
    return std::vector<Tensor>{transpose(gy, d0, d1)};
  });
}

}  // namespace pconv
