// bf16 dot products on the CPU (core/cpu/dot_precision.h, gemm_bf16.cpp): the rounding, the
// GEMM against f64 products of the rounded operands, and conv2d's three passes against f32
// within bf16's tolerance. Skipped, saying why, on CPUs without AVX512-BF16.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "core/backend.h"
#include "core/cpu/dot_precision.h"
#include "core/cpu/gemm_bf16.h"
#include "core/tensor.h"

using namespace pconv;

namespace {

using Vec = std::vector<double>;

// Sets a precision for one scope and puts f32 back even when a check throws.
struct PrecisionScope {
  explicit PrecisionScope(CpuDotPrecision p) { set_cpu_dot_precision(p); }
  ~PrecisionScope() { set_cpu_dot_precision(CpuDotPrecision::F32); }
};

// The bf16 kernels cannot run on a CPU without AVX512-BF16: their tests are doctest skips there,
// "(needs AVX512-BF16)" in their names, not early returns counted as passes.
const auto kNeedsBf16 = doctest::skip(!cpu_has_bf16_dot());

Vec rounded(const Vec& v) {
  Vec r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = round_to_bf16(float(v[i]));
  return r;
}

Vec absolute(const Vec& v) {
  Vec r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = std::fabs(v[i]);
  return r;
}

Tensor tensor(const Vec& v, const Shape& s, DType dt) { return Tensor::from_vector(v, s).to(dt); }

constexpr double kUnit = 1.0 / (1 << 24);  // f32's unit roundoff
constexpr double kBf16 = 1.0 / (1 << 7);   // a product of two bf16 roundings: 2 · 2^-8

}  // namespace

TEST_CASE("bf16 rounding: nearest even, denormals to zero, NaN and infinity kept") {
  CHECK(round_to_bf16(1.0f) == 1.0f);
  CHECK(round_to_bf16(1.0f + 0x1p-8f) == 1.0f);                  // halfway, to the even 1
  CHECK(round_to_bf16(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f);    // halfway, to the even 1 + 2^-6
  CHECK(round_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 1.0f + 0x1p-7f);  // above halfway: up
  CHECK(round_to_bf16(-3.0f) == -3.0f);
  CHECK(round_to_bf16(std::numeric_limits<float>::max()) == std::numeric_limits<float>::infinity());
  CHECK(round_to_bf16(std::numeric_limits<float>::infinity()) == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
  CHECK(round_to_bf16(std::numeric_limits<float>::denorm_min()) == 0.0f);
  CHECK(std::signbit(round_to_bf16(-std::numeric_limits<float>::denorm_min())));
}

TEST_CASE("bf16 precision: F32 by default") { CHECK(cpu_dot_precision() == CpuDotPrecision::F32); }

TEST_CASE("bf16 precision: refused on a CPU without AVX512-BF16 (needs a CPU without AVX512-BF16)" *
          doctest::skip(cpu_has_bf16_dot())) {
  CHECK_THROWS_WITH_AS(set_cpu_dot_precision(CpuDotPrecision::BF16), doctest::Contains("AVX512-BF16"), Error);
  CHECK(cpu_dot_precision() == CpuDotPrecision::F32);
}

TEST_CASE("gemm_bf16: f64 products of the bf16-rounded operands, summed in f32 (needs AVX512-BF16)" * kNeedsBf16) {
  // Sizes off every panel multiple (8 rows, 32 columns, depth blocks of 256, pairs of k),
  // operands read in place and transposed, overwriting and accumulating.
  struct Case { int64_t m, n, k; };
  for (const Case& t : {Case{13, 45, 37}, Case{8, 32, 2}, Case{1, 1, 1}, Case{70, 300, 600}, Case{9, 33, 257}})
    for (int layout = 0; layout < 4; ++layout)
      for (bool accumulate : {false, true}) {
        const bool ta = layout & 1, tb = layout & 2;
        CAPTURE(t.m); CAPTURE(t.n); CAPTURE(t.k); CAPTURE(ta); CAPTURE(tb); CAPTURE(accumulate);
        Generator gen(uint64_t(t.m * 1000 + t.n * 10 + layout));
        const Vec a = Tensor::randn({t.m * t.k}, gen, DType::F64).to_double_vector();
        const Vec b = Tensor::randn({t.k * t.n}, gen, DType::F64).to_double_vector();
        const Vec c0 = Tensor::randn({t.m * (t.n + 3)}, gen, DType::F64).to_double_vector();
        std::vector<float> af(a.begin(), a.end()), bf(b.begin(), b.end()), c(c0.begin(), c0.end());
        // A stored m×k (or k×m when transposed), B k×n (or n×k); C has 3 spare columns a row.
        const MatrixF32 am = ta ? MatrixF32{af.data(), 1, t.m} : MatrixF32{af.data(), t.k, 1};
        const MatrixF32 bm = tb ? MatrixF32{bf.data(), 1, t.k} : MatrixF32{bf.data(), t.n, 1};
        gemm_bf16(t.m, t.n, t.k, am, bm, c.data(), t.n + 3, accumulate);
        double worst = 0;
        for (int64_t i = 0; i < t.m; ++i)
          for (int64_t j = 0; j < t.n; ++j) {
            double sum = accumulate ? double(float(c0[size_t(i * (t.n + 3) + j)])) : 0.0, mag = std::fabs(sum);
            for (int64_t p = 0; p < t.k; ++p) {
              const double x = round_to_bf16(af[size_t(ta ? p * t.m + i : i * t.k + p)]);
              const double y = round_to_bf16(bf[size_t(tb ? j * t.k + p : p * t.n + j)]);
              sum += x * y;
              mag += std::fabs(x * y);
            }
            // f32 accumulation: at most k + 1 roundings of partial sums bounded by mag.
            worst = std::max(worst, std::fabs(c[size_t(i * (t.n + 3) + j)] - sum) / ((t.k + 2) * kUnit * mag + 1e-30));
          }
        CHECK(worst <= 1.0);
        for (int64_t i = 0; i < t.m; ++i)  // the spare columns are not written
          for (int64_t j = t.n; j < t.n + 3; ++j) CHECK(c[size_t(i * (t.n + 3) + j)] == float(c0[size_t(i * (t.n + 3) + j)]));
      }
}

TEST_CASE("gemm_bf16: B with contiguous columns gives the same bits as B with contiguous rows (needs AVX512-BF16)" *
          kNeedsBf16) {
  // Backward-weight's colsᵀ packs through its own path (whole columns, transposed in
  // registers); it must round and order the pairs exactly as the row-contiguous path does.
  // Columns a power of two apart, as a band of cols is; k odd, over a depth block, under 16
  // pairs; n off the 16- and 32-column panels.
  struct Case { int64_t m, n, k, ld; };
  for (const Case& t : {Case{8, 32, 32, 32}, Case{3, 45, 37, 64}, Case{16, 70, 601, 1024}, Case{5, 1, 9, 16},
                        Case{9, 100, 257, 4096}, Case{32, 17, 2, 2}})
    for (bool accumulate : {false, true}) {
      CAPTURE(t.m); CAPTURE(t.n); CAPTURE(t.k); CAPTURE(accumulate);
      Generator gen(uint64_t(t.m * 1000 + t.n * 10 + t.k));
      const Vec a = Tensor::randn({t.m * t.k}, gen, DType::F64).to_double_vector();
      const Vec b = Tensor::randn({t.k * t.n}, gen, DType::F64).to_double_vector();
      const Vec c0 = Tensor::randn({t.m * t.n}, gen, DType::F64).to_double_vector();
      std::vector<float> af(a.begin(), a.end()), rows(b.begin(), b.end());  // B k×n, rows contiguous
      std::vector<float> columns(size_t(t.n * t.ld), std::numeric_limits<float>::quiet_NaN());
      for (int64_t p = 0; p < t.k; ++p)  // the same B, column j at columns + j·ld
        for (int64_t j = 0; j < t.n; ++j) columns[size_t(j * t.ld + p)] = rows[size_t(p * t.n + j)];
      std::vector<float> by_rows(c0.begin(), c0.end()), by_columns = by_rows;
      const MatrixF32 am{af.data(), t.k, 1};
      gemm_bf16(t.m, t.n, t.k, am, MatrixF32{rows.data(), t.n, 1}, by_rows.data(), t.n, accumulate);
      gemm_bf16(t.m, t.n, t.k, am, MatrixF32{columns.data(), 1, t.ld}, by_columns.data(), t.n, accumulate);
      int64_t differ = 0;
      for (size_t i = 0; i < by_rows.size(); ++i) differ += std::memcmp(&by_rows[i], &by_columns[i], sizeof(float)) != 0;
      CHECK(differ == 0);
    }
}

TEST_CASE("conv2d bf16: forward, backward-data and backward-weight within bf16 rounding of f32 (needs AVX512-BF16)" *
          kNeedsBf16) {
  struct Case { int64_t N, C, H, W, K, kh, kw, stride, pad; };
  const std::vector<Case> cases = {
      {1, 3, 17, 19, 16, 7, 7, 2, 3},    // first-layer-like 7×7 s2
      {2, 5, 12, 10, 12, 5, 5, 2, 2},    // 5×5 s2, batch 2
      {2, 40, 9, 11, 24, 3, 3, 1, 1},    // 3×3 s1, depth 360: two depth blocks
      {20, 24, 4, 4, 40, 3, 3, 1, 1},    // tiny images, several in one GEMM
      {2, 64, 4, 4, 32, 3, 3, 2, 1},     // 8 output pixels: too few for bf16, stays f32
      {1, 30, 8, 7, 20, 1, 1, 1, 0},     // 1×1 (no im2col)
      {1, 64, 20, 20, 64, 3, 3, 1, 1},   // large enough to thread inside the GEMM
      {1, 200, 12, 64, 8, 3, 3, 1, 1},   // deep and wide: row bands, two-phase scatter
      {2, 6, 9, 9, 3, 3, 3, 1, 1},       // K = 3: the direct loops, which stay f32
      // Stride 1 and ≥ 16384 input pixels: backward-data as a forward of the turned weights
      // (padding k − 1 − pad); the 3×3 s1 cases above stay with the scatter
      {2, 12, 100, 90, 20, 5, 5, 1, 2},  // 5×5, pad 2
      {1, 16, 130, 128, 8, 3, 3, 1, 0},  // 3×3 unpadded: gx's border from 2 rows of padding
      {1, 3, 128, 128, 16, 3, 3, 1, 1},  // C = 3: gx through the scatter (the turned conv would be thin)
  };
  Backend& cpu = backend(Device::CPU);
  uint64_t seed = 500;
  for (const Case& t : cases) {
    const int64_t Ho = (t.H + 2 * t.pad - t.kh) / t.stride + 1, Wo = (t.W + 2 * t.pad - t.kw) / t.stride + 1;
    const Shape xs{t.N, t.C, t.H, t.W}, ws{t.K, t.C, t.kh, t.kw}, ys{t.N, t.K, Ho, Wo};
    const std::string name = "x " + shape_str(xs) + " w " + shape_str(ws) + " stride " + std::to_string(t.stride);
    CAPTURE(name);
    Generator gen(seed++);
    const Vec x = Tensor::randn(xs, gen, DType::F64).to_double_vector();
    const Vec w = Tensor::randn(ws, gen, DType::F64).to_double_vector();
    const Vec gy = Tensor::randn(ys, gen, DType::F64).to_double_vector();
    const Conv2dParams p{t.stride, t.pad};
    // The three passes of (a, b) in one dtype: y = conv(x, w), gx = from (gy, w), gw = from (gy, x).
    auto passes = [&](const Vec& xv, const Vec& wv, const Vec& gyv, DType dt) {
      Tensor xt = tensor(xv, xs, dt), wt = tensor(wv, ws, dt), gyt = tensor(gyv, ys, dt);
      Tensor y = Tensor::empty(ys, dt), gx = Tensor::full(xs, 7.0, dt), gw = Tensor::full(ws, 7.0, dt);
      cpu.conv2d_forward(xt, wt, y, p);
      cpu.conv2d_backward_data(gyt, wt, gx, p);
      cpu.conv2d_backward_weight(gyt, xt, gw, p);
      return std::vector<Vec>{y.to_double_vector(), gx.to_double_vector(), gw.to_double_vector()};
    };
    const std::vector<Vec> f32 = passes(x, w, gy, DType::F32);
    std::vector<Vec> bf16;
    {
      PrecisionScope scope(CpuDotPrecision::BF16);
      bf16 = passes(x, w, gy, DType::F32);
    }
    CHECK(passes(x, w, gy, DType::F32) == f32);  // back to f32: bit for bit as before
    const std::vector<Vec> exact = passes(rounded(x), rounded(w), rounded(gy), DType::F64);
    const std::vector<Vec> magnitude = passes(absolute(x), absolute(w), absolute(gy), DType::F64);
    // Terms summed per output: forward C·kh·kw, backward-data at most K·kh·kw, backward-weight N·Ho·Wo.
    const int64_t terms[3] = {t.C * t.kh * t.kw, t.K * t.kh * t.kw, t.N * Ho * Wo};
    const char* pass_names[3] = {"forward", "backward-data", "backward-weight"};
    for (int i = 0; i < 3; ++i) {
      CAPTURE(pass_names[i]);
      double vs_exact = 0, vs_f32 = 0, largest_change = 0;
      for (size_t j = 0; j < f32[i].size(); ++j) {
        const double mag = magnitude[i][j] + 1e-30;
        vs_exact = std::max(vs_exact, std::fabs(bf16[i][j] - exact[i][j]) / mag);
        vs_f32 = std::max(vs_f32, std::fabs(bf16[i][j] - f32[i][j]) / mag);
        largest_change = std::max(largest_change, std::fabs(bf16[i][j] - f32[i][j]));
      }
      // The direct loops (K ≤ 4) and passes of under 64 output pixels (conv.cpp's
      // kMinBf16Pixels) are not bf16: unchanged.
      if (t.K <= 4 || t.N * Ho * Wo < 64) {
        CHECK(bf16[i] == f32[i]);
        continue;
      }
      // The products of the rounded operands, summed in f32 (≤ terms + 2 roundings).
      CHECK(vs_exact <= (terms[i] + 2) * kUnit);
      // Against f32: each product off by at most two bf16 roundings, 2^-7 of its size, plus
      // both sums' f32 roundings.
      CHECK(vs_f32 <= kBf16 + 2 * (terms[i] + 2) * kUnit);
      CHECK(largest_change > 0);  // the bf16 kernel did run
      std::printf("conv2d bf16 %-50s %-15s max |bf16 - f32| / sum|products| = %.2e (bound %.2e)\n",
                  name.c_str(), pass_names[i], vs_f32, kBf16 + 2 * (terms[i] + 2) * kUnit);
    }
  }
}
