#pragma once
// The shape of one CPU convolution, shared by the im2col + GEMM kernels (conv.cpp) and the
// direct kernels for few output channels (conv_thin.cpp).
#include <algorithm>
#include <cstdint>

namespace pconv::cpu_conv {

struct ConvGeometry {
  int64_t N, C, H, W, K, kh, kw, Ho, Wo, stride, pad;
  int64_t depth() const { return C * kh * kw; }  // rows of cols
  // A 1×1 stride-1 unpadded conv needs no im2col: cols is the input itself.
  bool pointwise() const { return kh == 1 && kw == 1 && stride == 1 && pad == 0; }
};

// Output columns ow whose input column ow·s − pad + kj lies inside [0, W).
struct ColumnRange {
  int64_t lo, hi;
  int64_t in0;  // the input column ow = lo reads (valid when lo < hi)
  int64_t size() const { return hi - lo; }
};
inline ColumnRange valid_columns(const ConvGeometry& g, int64_t kj) {
  const int64_t need = g.pad - kj;  // ow·s ≥ need
  const int64_t lo = need <= 0 ? 0 : (need + g.stride - 1) / g.stride;
  const int64_t lim = g.W - 1 + g.pad - kj;  // ow·s ≤ lim
  const int64_t hi = lim < 0 ? 0 : std::min(g.Wo, lim / g.stride + 1);
  return {std::min(lo, hi), hi, std::min(lo, hi) * g.stride - g.pad + kj};
}

}  // namespace pconv::cpu_conv
