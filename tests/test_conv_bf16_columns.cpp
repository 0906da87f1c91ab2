// gemm_bf16 packing a convolution's columns straight from the images (ConvColumns, no im2col)
// against the materialised cols of an im2col written out here: the packed words must be the
// same bits, so every result is too, for the forward (B = cols) and the weight gradient
// (B = colsᵀ). Skipped, saying why, on CPUs without AVX512-BF16.
#include <doctest/doctest.h>

#include <cstring>
#include <limits>

#include "core/backend.h"
#include "core/cpu/dot_precision.h"
#include "core/cpu/gemm_bf16.h"
#include "core/tensor.h"

using namespace pconv;

namespace {

const auto kNeedsBf16 = doctest::skip(!cpu_has_bf16_dot());

// Sets a precision for one scope and puts f32 back even when a pass throws.
struct PrecisionScope {
  explicit PrecisionScope(CpuDotPrecision p) { set_cpu_dot_precision(p); }
  ~PrecisionScope() { set_cpu_dot_precision(CpuDotPrecision::F32); }
};

struct Case {
  int64_t C, H, W, kh, kw, stride, pad;
  int64_t images, oh0, rows;  // rows 0: all output rows from oh0
  int64_t Ho() const { return (H + 2 * pad - kh) / stride + 1; }
  int64_t Wo() const { return (W + 2 * pad - kw) / stride + 1; }
  int64_t band() const { return rows ? rows : Ho() - oh0; }
};

std::vector<float> random_floats(int64_t count, uint64_t seed) {
  Generator gen(seed);
  const std::vector<double> v = Tensor::randn({count}, gen, DType::F64).to_double_vector();
  return std::vector<float>(v.begin(), v.end());
}

// im2col's cols[(c·kh + ki)·kw + kj, (n·rows + oh − oh0)·Wo + ow], 0 outside the image.
std::vector<float> written_cols(const Case& t, const float* x) {
  const int64_t pixels = t.images * t.band() * t.Wo();
  std::vector<float> cols(size_t(t.C * t.kh * t.kw * pixels), 0.0f);
  for (int64_t c = 0; c < t.C; ++c)
    for (int64_t ki = 0; ki < t.kh; ++ki)
      for (int64_t kj = 0; kj < t.kw; ++kj)
        for (int64_t n = 0; n < t.images; ++n)
          for (int64_t oh = t.oh0; oh < t.oh0 + t.band(); ++oh)
            for (int64_t ow = 0; ow < t.Wo(); ++ow) {
              const int64_t ih = oh * t.stride - t.pad + ki, iw = ow * t.stride - t.pad + kj;
              if (ih < 0 || ih >= t.H || iw < 0 || iw >= t.W) continue;
              cols[size_t(((c * t.kh + ki) * t.kw + kj) * pixels + (n * t.band() + oh - t.oh0) * t.Wo() + ow)] =
                  x[size_t(((n * t.C + c) * t.H + ih) * t.W + iw)];
            }
  return cols;
}

int64_t differing(const std::vector<float>& a, const std::vector<float>& b) {
  int64_t count = 0;
  for (size_t i = 0; i < a.size(); ++i) count += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return count;
}

}  // namespace

TEST_CASE("gemm_bf16: columns packed from the image are the same bits as im2col's (needs AVX512-BF16)" * kNeedsBf16) {
  // Strides 1–3, pads 0 to beyond the kernel, 1×1 to 7×7 and non-square kernels, odd sizes,
  // several images a panel (tiny outputs), bands starting mid-image, depth over one block
  // (256) and odd, panels that straddle output rows and images, a 1-pixel and a 1-channel case.
  const std::vector<Case> cases = {
      {3, 17, 19, 7, 7, 2, 3, 1, 0, 0},   {5, 12, 10, 5, 5, 2, 2, 2, 0, 0},   {40, 9, 11, 3, 3, 1, 1, 2, 0, 0},
      {24, 4, 4, 3, 3, 1, 1, 7, 0, 0},    {16, 30, 70, 3, 3, 1, 1, 1, 5, 7},  {7, 31, 31, 4, 4, 1, 1, 2, 0, 0},
      {9, 33, 35, 4, 4, 2, 1, 1, 3, 9},   {3, 10, 40, 3, 3, 3, 2, 2, 0, 0},   {5, 6, 6, 1, 1, 1, 1, 3, 0, 0},
      {2, 5, 5, 3, 3, 1, 4, 2, 0, 0},     {300, 7, 9, 1, 1, 2, 0, 2, 0, 0},   {33, 20, 64, 3, 3, 1, 1, 1, 0, 0},
      {1, 3, 3, 3, 3, 1, 0, 1, 0, 0},     {6, 8, 13, 2, 5, 1, 2, 3, 1, 4},    {29, 11, 45, 3, 3, 2, 1, 1, 0, 0},
  };
  uint64_t seed = 900;
  for (const Case& t : cases) {
    const int64_t depth = t.C * t.kh * t.kw, pixels = t.images * t.band() * t.Wo();
    CAPTURE(t.C); CAPTURE(t.H); CAPTURE(t.W); CAPTURE(t.kh); CAPTURE(t.kw); CAPTURE(t.stride); CAPTURE(t.pad);
    CAPTURE(t.images); CAPTURE(t.oh0); CAPTURE(t.band());
    const std::vector<float> x = random_floats(t.images * t.C * t.H * t.W, seed++);
    const std::vector<float> cols = written_cols(t, x.data());
    for (bool transposed : {false, true})
      for (bool accumulate : {false, true}) {
        CAPTURE(transposed); CAPTURE(accumulate);
        // The forward: C[m, pixels] = W[m, depth] · cols. The weight gradient: C[m, depth] = gy[m, pixels] · colsᵀ.
        const int64_t m = 13, k = transposed ? pixels : depth, n = transposed ? depth : pixels;
        const std::vector<float> a = random_floats(m * k, seed++), c0 = random_floats(m * n, seed++);
        const MatrixF32 am{a.data(), k, 1};
        const MatrixF32 written = transposed ? MatrixF32{cols.data(), 1, pixels} : MatrixF32{cols.data(), pixels, 1};
        const ConvColumns in_place{x.data(), t.C, t.H, t.W, t.kh, t.kw, t.stride, t.pad, t.Wo(),
                                   t.oh0, t.band(), t.images, transposed};
        std::vector<float> expected = c0, got = c0;
        gemm_bf16(m, n, k, am, written, expected.data(), n, accumulate);
        gemm_bf16(m, am, in_place, got.data(), n, accumulate);
        CHECK(differing(expected, got) == 0);
      }
  }
}

TEST_CASE("gemm_bf16: columns packed from the image refuse a left operand of another depth (needs AVX512-BF16)" *
          kNeedsBf16) {
  const std::vector<float> x(2 * 5 * 5, 1.0f), a(4 * 17, 1.0f);
  std::vector<float> c(4 * 25);
  const ConvColumns b{x.data(), 2, 5, 5, 3, 3, 1, 1, 5, 0, 5, 1, false};  // depth 18
  CHECK_THROWS_AS(gemm_bf16(PackedBf16Lhs(4, 17, MatrixF32{a.data(), 17, 1}), b, c.data(), 25, false), Error);
}

TEST_CASE("conv2d bf16 forward: the same bits as im2col's cols through gemm_bf16 (needs AVX512-BF16)" * kNeedsBf16) {
  // Through the backend: its blocks (bands of rows, several tiny images a block, threads taking
  // blocks or threading each GEMM) must not change a bit of the forward, which sums every output
  // over the same depth in the same order whatever the blocks.
  struct ConvCase { int64_t N, C, H, W, K, kh, kw, stride, pad; };
  const std::vector<ConvCase> cases = {
      {1, 3, 37, 41, 16, 7, 7, 2, 3}, {3, 24, 6, 5, 40, 3, 3, 1, 1},    {2, 64, 31, 31, 32, 4, 4, 1, 1},
      {1, 200, 12, 64, 8, 3, 3, 1, 1}, {2, 16, 70, 66, 24, 3, 3, 1, 1}, {2, 9, 33, 35, 12, 4, 4, 2, 1},
  };
  Backend& cpu = backend(Device::CPU);
  uint64_t seed = 950;
  for (const ConvCase& t : cases) {
    const Case geometry{t.C, t.H, t.W, t.kh, t.kw, t.stride, t.pad, 1, 0, 0};
    const int64_t Ho = geometry.Ho(), Wo = geometry.Wo(), depth = t.C * t.kh * t.kw;
    CAPTURE(t.N); CAPTURE(t.C); CAPTURE(t.H); CAPTURE(t.W); CAPTURE(t.K); CAPTURE(t.kh); CAPTURE(t.stride);
    const std::vector<float> x = random_floats(t.N * t.C * t.H * t.W, seed++), w = random_floats(t.K * depth, seed++);
    Tensor xt = Tensor::empty({t.N, t.C, t.H, t.W}, DType::F32), wt = Tensor::empty({t.K, t.C, t.kh, t.kw}, DType::F32);
    std::memcpy(xt.data<float>(), x.data(), x.size() * sizeof(float));
    std::memcpy(wt.data<float>(), w.data(), w.size() * sizeof(float));
    Tensor y = Tensor::full({t.N, t.K, Ho, Wo}, std::numeric_limits<double>::quiet_NaN(), DType::F32);
    {
      PrecisionScope scope(CpuDotPrecision::BF16);
      cpu.conv2d_forward(xt, wt, y, Conv2dParams{t.stride, t.pad});
    }
    const PackedBf16Lhs wb(t.K, depth, MatrixF32{w.data(), depth, 1});
    std::vector<float> expected(size_t(t.N * t.K * Ho * Wo)), got(expected.size());
    std::memcpy(got.data(), y.data<float>(), got.size() * sizeof(float));
    for (int64_t n = 0; n < t.N; ++n) {
      const std::vector<float> cols = written_cols(geometry, x.data() + n * t.C * t.H * t.W);
      gemm_bf16(wb, Ho * Wo, MatrixF32{cols.data(), Ho * Wo, 1}, expected.data() + n * t.K * Ho * Wo, Ho * Wo, false);
    }
    CHECK(differing(expected, got) == 0);
  }
}
