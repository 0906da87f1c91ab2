#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/ops.h"
#include "tests/gradcheck.h"

using namespace pconv;

TEST_CASE("upsample_nearest2x: forward copies each value to a 2×2 block") {
  for (const Shape& s : {Shape{2, 3, 4, 5}, Shape{1, 1, 1, 1}, Shape{1, 2, 3, 1}}) {
    for (DType dt : {DType::F32, DType::F64}) {
      CAPTURE(shape_str(s));
      Generator gen(3);
      Tensor x = Tensor::randn(s, gen, dt);
      Tensor y = upsample_nearest2x(x);
      REQUIRE(y.shape() == Shape{s[0], s[1], 2 * s[2], 2 * s[3]});
      bool ok = true;
      for (int64_t n = 0; n < s[0]; ++n)
        for (int64_t c = 0; c < s[1]; ++c)
          for (int64_t i = 0; i < 2 * s[2]; ++i)
            for (int64_t j = 0; j < 2 * s[3]; ++j)
              ok = ok && y.at({n, c, i, j}) == x.at({n, c, i / 2, j / 2});
      CHECK(ok);
    }
  }
}

TEST_CASE("upsample_nearest2x: f64 gradient is the 2×2 block sum") {
  for (const Shape& s : {Shape{2, 2, 3, 4}, Shape{1, 1, 1, 1}, Shape{1, 3, 2, 5}}) {
    CAPTURE(shape_str(s));
    Tensor x = testing::rand_leaf(s, 7);
    auto r = testing::gradcheck([](const std::vector<Tensor>& in) { return upsample_nearest2x(in[0]); }, {x});
    CHECK_MESSAGE(r.ok, r.report);
  }
}

TEST_CASE("upsample_bilinear2x: PyTorch's example (align_corners=False) and nearest ×2 blurred by [1 2 1]/4") {
  // F.interpolate([[1, 2], [3, 4]], scale_factor=2, mode="bilinear"), from PyTorch's documentation.
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {1, 1, 2, 2});
  CHECK(upsample_bilinear2x(x).to_float_vector() ==
        std::vector<float>{1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4});
  // Another way to the same values: nearest ×2, then a [1 2 1]/4 blur along each axis with the
  // edges repeated (at 2i: ¼x[i-1] + ½x[i] + ¼x[i] = ¾x[i] + ¼x[i-1]).
  for (const Shape& s : {Shape{2, 3, 4, 5}, Shape{1, 1, 1, 1}, Shape{1, 2, 3, 1}, Shape{1, 1, 1, 6}}) {
    CAPTURE(shape_str(s));
    Generator gen(5);
    Tensor in = Tensor::randn(s, gen, DType::F64);
    Tensor y = upsample_bilinear2x(in);
    REQUIRE(y.shape() == Shape{s[0], s[1], 2 * s[2], 2 * s[3]});
    const Tensor near = upsample_nearest2x(in);
    const int64_t H = 2 * s[2], W = 2 * s[3];
    auto at = [&](int64_t n, int64_t c, int64_t i, int64_t j) {
      return near.at({n, c, std::clamp<int64_t>(i, 0, H - 1), std::clamp<int64_t>(j, 0, W - 1)});
    };
    double worst = 0;
    for (int64_t n = 0; n < s[0]; ++n)
      for (int64_t c = 0; c < s[1]; ++c)
        for (int64_t i = 0; i < H; ++i)
          for (int64_t j = 0; j < W; ++j) {
            double blurred = 0;
            for (int64_t a = -1; a <= 1; ++a)
              for (int64_t b = -1; b <= 1; ++b) blurred += (a ? 1 : 2) * (b ? 1 : 2) / 16.0 * at(n, c, i + a, j + b);
            worst = std::max(worst, std::abs(blurred - y.at({n, c, i, j})));
          }
    CHECK(worst < 1e-12);
  }
}

TEST_CASE("upsample_bilinear2x: f64 gradcheck, and upsample_concat's bilinear mode is the two steps in one") {
  for (const Shape& s : {Shape{2, 2, 3, 4}, Shape{1, 1, 1, 1}, Shape{1, 3, 2, 5}, Shape{1, 1, 5, 1}}) {
    CAPTURE(shape_str(s));
    Tensor x = testing::rand_leaf(s, 8);
    auto r = testing::gradcheck([](const std::vector<Tensor>& in) { return upsample_bilinear2x(in[0]); }, {x});
    CHECK_MESSAGE(r.ok, r.report);
  }
  Generator gen(4);
  const Tensor low = Tensor::randn({2, 3, 4, 5}, gen), skip = Tensor::randn({2, 2, 8, 10}, gen);
  NoGradGuard no_grad;
  CHECK(upsample_concat(low, skip, Upsampling::Bilinear).to_float_vector() ==
        concat({upsample_bilinear2x(low), skip}, 1).to_float_vector());
  CHECK(upsample2x(low, Upsampling::Nearest).to_float_vector() == upsample_nearest2x(low).to_float_vector());
}

TEST_CASE("upsample_nearest2x: mask groups are upsampled one by one, without gradient") {
  Generator gen(9);
  Tensor m1 = Tensor::rand({2, 1, 3, 2}, gen, DType::F32);
  Tensor m2 = Tensor::rand({2, 1, 3, 2}, gen, DType::F32);
  Mask m{{5, m1}, {3, m2}};
  Mask up = upsample_nearest2x(m);
  REQUIRE(up.size() == 2);
  CHECK(up[0].channels == 5);
  CHECK(up[1].channels == 3);
  for (size_t g = 0; g < 2; ++g) {
    CHECK(up[g].mask.shape() == Shape{2, 1, 6, 4});
    CHECK(!up[g].mask.requires_grad());
    CHECK(up[g].mask.at({1, 0, 5, 3}) == m[g].mask.at({1, 0, 2, 1}));
    CHECK(up[g].mask.at({0, 0, 2, 1}) == m[g].mask.at({0, 0, 1, 0}));
  }
  CHECK_THROWS_WITH_AS(upsample_nearest2x(Mask{{1, Tensor::ones({2, 2})}}),
                       "upsample_nearest2x (mask): x must be N×C×H×W, got shape [2, 2]", Error);
}

namespace {
// Naive 2×2/2 max pool with the first maximum (row-major) of each window, and its adjoint.
struct NaivePool {
  std::vector<double> y, gx;
};
NaivePool naive_pool(const Tensor& x, const std::vector<double>& gy) {
  const Shape& s = x.shape();
  const int64_t ho = s[2] / 2, wo = s[3] / 2;
  NaivePool r{{}, std::vector<double>(size_t(x.numel()), 0.0)};
  int64_t k = 0;
  for (int64_t n = 0; n < s[0]; ++n)
    for (int64_t c = 0; c < s[1]; ++c)
      for (int64_t i = 0; i < ho; ++i)
        for (int64_t j = 0; j < wo; ++j, ++k) {
          int64_t bi = 2 * i, bj = 2 * j;
          for (int64_t a = 0; a < 2; ++a)
            for (int64_t b = 0; b < 2; ++b)
              if (x.at({n, c, 2 * i + a, 2 * j + b}) > x.at({n, c, bi, bj})) bi = 2 * i + a, bj = 2 * j + b;
          r.y.push_back(x.at({n, c, bi, bj}));
          if (!gy.empty()) r.gx[size_t(((n * s[1] + c) * s[2] + bi) * s[3] + bj)] += gy[size_t(k)];
        }
  return r;
}
}  // namespace

TEST_CASE("max_pool2d: forward and backward against naive loops, odd sizes floor") {
  for (const Shape& s : {Shape{2, 3, 4, 6}, Shape{1, 2, 5, 7}, Shape{1, 1, 2, 2}, Shape{2, 1, 3, 2}}) {
    for (DType dt : {DType::F32, DType::F64}) {
      CAPTURE(shape_str(s));
      Generator gen(11);
      Tensor x = Tensor::randn(s, gen, dt);
      if (dt == DType::F64) x.set_requires_grad(true);
      Tensor y = max_pool2d(x);
      REQUIRE(y.shape() == Shape{s[0], s[1], s[2] / 2, s[3] / 2});
      Tensor gy = Tensor::randn(y.shape(), gen, dt);
      NaivePool ref = naive_pool(x, gy.to_double_vector());
      CHECK(y.to_double_vector() == ref.y);
      if (dt != DType::F64) continue;
      y.backward(gy);
      CHECK(x.grad().to_double_vector() == ref.gx);  // odd last row/column: gradient 0
    }
  }
}

TEST_CASE("max_pool2d: ties route the gradient to the first maximum, deterministically") {
  // Window values: all equal; max twice (second and fourth); max in the last place.
  Tensor x = Tensor::from_vector(std::vector<double>{1, 1, 0, 3, 2, 2,  //
                                                     1, 1, 1, 3, 0, 5},
                                 {1, 1, 2, 6});
  x.set_requires_grad(true);
  Tensor y = max_pool2d(x);
  CHECK(y.to_double_vector() == std::vector<double>{1, 3, 5});
  y.backward(Tensor::from_vector(std::vector<double>{10, 20, 30}, {1, 1, 1, 3}));
  CHECK(x.grad().to_double_vector() == std::vector<double>{10, 0, 0, 20, 0, 0,  //
                                                           0, 0, 0, 0, 0, 30});
  // A NaN propagates (as PyTorch) and takes the gradient; -0 and +0 tie, the first wins.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor xn = Tensor::from_vector(std::vector<double>{1, nan, -0.0, 0.0,  //
                                                      7, 2, 0.0, -0.0},
                                  {1, 1, 2, 4});
  xn.set_requires_grad(true);
  Tensor yn = max_pool2d(xn);
  CHECK(std::isnan(yn.at({0, 0, 0, 0})));
  CHECK(yn.at({0, 0, 0, 1}) == 0.0);
  CHECK(std::signbit(yn.at({0, 0, 0, 1})));  // the first of the tie: -0
  yn.backward(Tensor::from_vector(std::vector<double>{3, 4}, {1, 1, 1, 2}));
  CHECK(xn.grad().to_double_vector() == std::vector<double>{0, 3, 4, 0, 0, 0, 0, 0});
  // The same call twice gives the same routing (no dependence on threads).
  Tensor x2 = Tensor::ones({2, 3, 8, 8}, DType::F64).set_requires_grad(true);
  for (int rep = 0; rep < 2; ++rep) {
    x2.zero_grad();
    max_pool2d(x2).backward(Tensor::ones({2, 3, 4, 4}, DType::F64));
    auto g = x2.grad().to_double_vector();
    for (int64_t k = 0; k < x2.numel(); ++k) {
      const int64_t i = (k / 8) % 8, j = k % 8;
      if (g[size_t(k)] != ((i % 2 == 0 && j % 2 == 0) ? 1.0 : 0.0)) {
        FAIL_CHECK("gradient at element " << k << " is " << g[size_t(k)]);
        break;
      }
    }
  }
}

TEST_CASE("max_pool2d: f64 gradcheck with distinct values") {
  for (const Shape& s : {Shape{2, 2, 4, 4}, Shape{1, 3, 5, 3}}) {
    CAPTURE(shape_str(s));
    // Distinct values spaced far beyond the finite-difference step: no kinks are crossed.
    Tensor x = Tensor::empty(s, DType::F64);
    std::vector<int64_t> perm(size_t(x.numel()));
    for (size_t k = 0; k < perm.size(); ++k) perm[k] = int64_t((k * 37 + 11) % perm.size());
    for (size_t k = 0; k < perm.size(); ++k) x.data<double>()[k] = 0.1 * double(perm[k]);
    x.set_requires_grad(true);
    auto r = testing::gradcheck([](const std::vector<Tensor>& in) { return max_pool2d(in[0]); }, {x});
    CHECK_MESSAGE(r.ok, r.report);
  }
}

TEST_CASE("resample: errors name the op and the shape") {
  CHECK_THROWS_WITH_AS(max_pool2d(Tensor::zeros({1, 1, 1, 4})),
                       "max_pool2d: input [1, 1, 1, 4] is smaller than the 2×2 window", Error);
  CHECK_THROWS_WITH_AS(max_pool2d(Tensor::zeros({3, 4, 4})),
                       "max_pool2d: x must be N×C×H×W, got shape [3, 4, 4]", Error);
  CHECK_THROWS_WITH_AS(upsample_nearest2x(Tensor::zeros({4, 4})),
                       "upsample_nearest2x: x must be N×C×H×W, got shape [4, 4]", Error);
  CHECK_THROWS_WITH_AS(upsample_bilinear2x(Tensor::zeros({4, 4})),
                       "upsample_bilinear2x: x must be N×C×H×W, got shape [4, 4]", Error);
}
