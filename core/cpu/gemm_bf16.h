#pragma once
// C (=, or += when accumulate) A · B with the operands rounded to bf16 and products summed in
// f32 (AVX512-BF16's VDPBF16PS). Only call it when cpu_has_bf16_dot() (core/cpu/dot_precision.h).
#include <cstdint>
#include <vector>

namespace pconv {

// An f32 matrix read in place: element (i, j) at data[i·row_stride + j·col_stride], so a
// transposed view is the same data with the strides swapped.
struct MatrixF32 {
  const float* data;
  int64_t row_stride, col_stride;
};

// A (m×k) rounded to bf16 and laid out for the kernel, so that an operand used by many GEMMs
// (a convolution's weights, once per pass) is converted once.
struct PackedBf16Lhs {
  PackedBf16Lhs(int64_t m, int64_t k, MatrixF32 a);
  int64_t m, k;
  std::vector<uint32_t> words;  // bf16 pairs along k, see gemm_bf16.cpp
};

// A convolution's column matrix (im2col's cols: row r = (c, ki, kj) of depth C·kh·kw, column
// j = a pixel of output rows [oh0, oh0 + rows) of `images` images, image-major) read straight
// from the images x (C×H×W each) while packing, so it is never written out. B is cols itself
// (k = depth, n = pixels: the forward) or, when `transposed`, colsᵀ (k = pixels, n = depth: the
// weight gradient). Entries outside the image are 0, as im2col writes them: the packed words,
// hence the results, are the same bits as for a materialised cols.
struct ConvColumns {
  const float* x;
  int64_t C, H, W, kh, kw, stride, pad, Wo;
  int64_t oh0, rows, images;
  bool transposed;
  int64_t depth() const { return C * kh * kw; }
  int64_t pixels() const { return images * rows * Wo; }
};

// C is m×n with rows ldc apart, A m×k, B k×n. Threads over the columns of C with OpenMP
// unless called from inside a parallel region.
void gemm_bf16(const PackedBf16Lhs& a, int64_t n, MatrixF32 b, float* c, int64_t ldc, bool accumulate);
void gemm_bf16(int64_t m, int64_t n, int64_t k, MatrixF32 a, MatrixF32 b, float* c, int64_t ldc,
               bool accumulate);
void gemm_bf16(const PackedBf16Lhs& a, const ConvColumns& b, float* c, int64_t ldc, bool accumulate);
void gemm_bf16(int64_t m, MatrixF32 a, const ConvColumns& b, float* c, int64_t ldc, bool accumulate);

}  // namespace pconv
