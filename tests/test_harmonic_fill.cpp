// Harmonic fill (models/harmonic_fill.h): against a direct dense solve of the same linear system,
// exact on harmonic functions, known pixels untouched, edge cases and bad input; the Backend
// kernel (and its through-the-host default) against the plane solver run plane by plane.
#include <doctest/doctest.h>

#include <Eigen/Dense>
#include <cmath>
#include <random>

#include "core/cpu/harmonic_fill.h"
#include "core/ops.h"
#include "models/harmonic_fill.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"

using namespace pconv;

namespace {

Tensor random_mask(int64_t N, int64_t H, int64_t W, uint64_t seed, double hole = 0.4, DType dtype = DType::F64) {
  Generator gen(seed);
  return step(Tensor::rand({N, 1, H, W}, gen, dtype), hole);
}

// The fill computed another way: the linear system of the holes (each hole pixel times its
// number of in-image neighbours minus its hole neighbours = the sum of its known neighbours),
// solved by dense LU. (Eigen here and in the library must see the same -mavx2: pconv's
// PUBLIC compile options give every file the same instruction set.)
std::vector<double> direct_fill(const std::vector<double>& v, const std::vector<double>& known, int64_t H, int64_t W) {
  std::vector<int64_t> index(size_t(H * W), -1);
  int64_t n = 0;
  for (int64_t i = 0; i < H * W; ++i)
    if (known[size_t(i)] < 0.5) index[size_t(i)] = n++;
  Eigen::MatrixXd A = Eigen::MatrixXd::Zero(n, n);
  Eigen::VectorXd b = Eigen::VectorXd::Zero(n);
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      const int64_t r = index[size_t(y * W + x)];
      if (r < 0) continue;
      const int64_t dy[4] = {-1, 1, 0, 0}, dx[4] = {0, 0, -1, 1};
      for (int k = 0; k < 4; ++k) {
        const int64_t yy = y + dy[k], xx = x + dx[k];
        if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
        A(r, r) += 1;
        const int64_t c = index[size_t(yy * W + xx)];
        if (c >= 0)
          A(r, c) -= 1;
        else
          b(r) += v[size_t(yy * W + xx)];
      }
    }
  const Eigen::VectorXd u = A.partialPivLu().solve(b);
  std::vector<double> out = v;
  for (int64_t i = 0; i < H * W; ++i)
    if (index[size_t(i)] >= 0) out[size_t(i)] = u(index[size_t(i)]);
  return out;
}

}  // namespace

TEST_CASE("harmonic fill: equals a direct solve of the Laplace system; known pixels unchanged") {
  // Sizes with odd sides, so the coarse levels have partial 2×2 blocks; holes touch the border.
  for (auto [h, w, s] : {std::tuple{13, 17, 1}, std::tuple{16, 16, 2}, std::tuple{7, 30, 3}, std::tuple{1, 9, 4}}) {
    const int64_t H = h, W = w, seed = s;
    Generator gen(uint64_t(seed) + 100);
    Tensor image = Tensor::randn({2, 3, H, W}, gen, DType::F64);
    Tensor mask = random_mask(2, H, W, uint64_t(seed));
    HarmonicFillParams o;
    o.tolerance = 1e-13;
    o.max_sweeps = 100000;
    const Tensor filled = harmonic_fill(mul(image, mask), mask, o);
    const std::vector<double> got = filled.to_double_vector(), img = image.to_double_vector(),
                              m = mask.to_double_vector();
    for (int64_t n = 0; n < 2; ++n) {
      const std::vector<double> known(m.begin() + n * H * W, m.begin() + (n + 1) * H * W);
      for (int64_t c = 0; c < 3; ++c) {
        const size_t off = size_t((n * 3 + c) * H * W);
        const std::vector<double> plane(img.begin() + long(off), img.begin() + long(off) + H * W);
        const std::vector<double> want = direct_fill(plane, known, H, W);
        double worst = 0;
        for (int64_t i = 0; i < H * W; ++i) {
          if (known[size_t(i)] > 0.5) REQUIRE(got[off + size_t(i)] == plane[size_t(i)]);
          worst = std::max(worst, std::abs(got[off + size_t(i)] - want[size_t(i)]));
        }
        CHECK_MESSAGE(worst < 1e-9, H << "×" << W << " n " << n << " c " << c << ": " << worst);
      }
    }
  }
}

TEST_CASE("harmonic fill: a linear ramp is harmonic, so interior holes get it back exactly") {
  const int64_t H = 40, W = 50;
  std::vector<float> ramp(size_t(H * W)), m(size_t(H * W), 1.f);
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) ramp[size_t(y * W + x)] = 0.01f * float(x) - 0.02f * float(y) + 0.3f;
  // An irregular interior hole, 2 pixels off the border everywhere.
  for (int64_t y = 2; y < H - 2; ++y)
    for (int64_t x = 2; x < W - 2; ++x)
      if ((x - 25) * (x - 25) + 3 * (y - 20) * (y - 20) < 400 || (x > 5 && x < 12)) m[size_t(y * W + x)] = 0;
  Tensor image = Tensor::from_vector(ramp, {1, 1, H, W});
  Tensor mask = Tensor::from_vector(m, {1, 1, H, W});
  const std::vector<float> got = harmonic_fill(mul(image, mask), mask).to_float_vector();
  double worst = 0;
  for (size_t i = 0; i < ramp.size(); ++i) worst = std::max(worst, double(std::abs(got[i] - ramp[i])));
  // The default tolerance: 1e-5 of the value range per sweep, well below an 8-bit level.
  CHECK(worst < 1e-3);
  CHECK(worst * 255 < 0.1);
}

TEST_CASE("harmonic fill: f32 and f64 agree; flat, full, empty and one-pixel planes") {
  Generator gen(7);
  Tensor image = Tensor::rand({1, 3, 33, 21}, gen, DType::F64);
  Tensor mask = random_mask(1, 33, 21, 8, 0.5);
  const Tensor a = harmonic_fill(image, mask), b = harmonic_fill(image.to(DType::F32), mask.to(DType::F32));
  CHECK(b.dtype() == DType::F32);
  CHECK(testing::max_rel_diff(b.to(DType::F64), a) < 1e-4);

  // Constant known pixels: every hole gets the constant.
  Tensor flat = Tensor::full({1, 1, 9, 9}, 0.25, DType::F64);
  for (double v : harmonic_fill(flat, random_mask(1, 9, 9, 9, 0.7)).to_double_vector())
    CHECK(v == doctest::Approx(0.25).epsilon(1e-9));
  // No hole: unchanged. No known pixel: zeros (the mean colour in normalised space).
  CHECK(harmonic_fill(image, Tensor::ones({1, 1, 33, 21}, DType::F64)).to_double_vector() == image.to_double_vector());
  for (double v : harmonic_fill(image, Tensor::zeros({1, 1, 33, 21}, DType::F64)).to_double_vector()) CHECK(v == 0);
  // One pixel known in a 1×1 and in a 5×1 plane.
  Tensor one = Tensor::full({1, 1, 5, 1}, 0.0, DType::F64);
  one.set({0, 0, 2, 0}, 0.75);
  Tensor one_mask = Tensor::zeros({1, 1, 5, 1}, DType::F64);
  one_mask.set({0, 0, 2, 0}, 1);
  for (double v : harmonic_fill(one, one_mask).to_double_vector()) CHECK(v == doctest::Approx(0.75));
  CHECK(harmonic_fill(Tensor::full({1, 1, 1, 1}, 0.5, DType::F64), Tensor::zeros({1, 1, 1, 1}, DType::F64)).item() == 0);
}

TEST_CASE("harmonic fill: hole values do not matter; wrong shapes and options are errors") {
  Generator gen(3);
  Tensor image = Tensor::rand({2, 3, 12, 12}, gen, DType::F32);
  Tensor mask = random_mask(2, 12, 12, 4, 0.4, DType::F32);
  Tensor noisy = add(mul(image, mask), mul(Tensor::rand({2, 3, 12, 12}, gen, DType::F32, Device::CPU, -9, 9),
                                           sub(Tensor::ones({2, 1, 12, 12}), mask)));
  CHECK(harmonic_fill(noisy, mask).to_float_vector() == harmonic_fill(image, mask).to_float_vector());
  CHECK_THROWS_WITH_AS(harmonic_fill(image, Tensor::ones({2, 3, 12, 12})), doctest::Contains("does not fit image"), Error);
  CHECK_THROWS_WITH_AS(harmonic_fill(image, Tensor::ones({1, 1, 12, 12})), doctest::Contains("does not fit image"), Error);
  CHECK_THROWS_AS(harmonic_fill(image.reshape({6, 12, 12}), mask), Error);
  HarmonicFillParams bad;
  bad.omega = 2.0;
  CHECK_THROWS_WITH_AS(harmonic_fill(image, mask, bad), doctest::Contains("omega"), Error);
}

namespace {

// The fill as the plane solver gives it: each (n, c) plane of `image` solved on its own with
// mask[n] ≥ 0.5 as known (the threshold compared in f32).
template <typename T>
std::vector<T> fill_plane_by_plane(const Tensor& image, const Tensor& mask, const HarmonicFillParams& params) {
  const int64_t N = image.size(0), C = image.size(1), H = image.size(2), W = image.size(3);
  std::vector<T> values(image.data<T>(), image.data<T>() + image.numel());
  const std::vector<float> m = mask.to_float_vector();
  for (int64_t n = 0; n < N; ++n) {
    std::vector<uint8_t> known(size_t(H * W));
    for (int64_t i = 0; i < H * W; ++i) known[size_t(i)] = m[size_t(n * H * W + i)] >= 0.5f;
    for (int64_t c = 0; c < C; ++c) harmonic_fill_plane(values.data() + (n * C + c) * H * W, known.data(), H, W, params);
  }
  return values;
}

template <typename T>
std::vector<T> values_of(const Tensor& t) {
  return std::vector<T>(t.data<T>(), t.data<T>() + t.numel());
}

template <typename T>
void check_backend_equals_planes(DType dtype, DType mask_dtype) {
  for (auto [h, w, s] : {std::tuple{13, 17, 21}, std::tuple{32, 24, 22}, std::tuple{1, 9, 23}, std::tuple{40, 7, 24}}) {
    const int64_t H = h, W = w;
    CAPTURE(H);
    CAPTURE(W);
    Generator gen{uint64_t(s)};
    const Tensor image = Tensor::randn({3, 2, H, W}, gen, dtype);
    // Mask values on a quarter grid, so that some sit exactly on the 0.5 threshold (known).
    std::mt19937 rng{uint32_t(s)};
    std::vector<double> quarters(size_t(3 * H * W));
    for (double& q : quarters) q = double(rng() % 5) / 4;
    const Tensor mask = Tensor::from_vector(quarters, {3, 1, H, W}).to(mask_dtype);
    HarmonicFillParams params;
    params.max_sweeps = 50;  // some planes stop at the cap, not at the tolerance: both must agree
    const std::vector<T> want = fill_plane_by_plane<T>(image, mask, params);
    const Tensor got = harmonic_fill(image, mask, params);
    REQUIRE(got.dtype() == dtype);
    CHECK(values_of<T>(got) == want);
    // The default that devices without a kernel get (through the host), called on the CPU.
    Tensor out = Tensor::empty(image.shape(), dtype);
    backend(Device::CPU).Backend::harmonic_fill(image, mask.to(dtype), out, params);
    CHECK(values_of<T>(out) == want);
  }
}

}  // namespace

TEST_CASE("harmonic fill: the Backend kernel and the through-the-host default equal the plane solver bit for bit") {
  check_backend_equals_planes<float>(DType::F32, DType::F32);
  check_backend_equals_planes<double>(DType::F64, DType::F64);
  check_backend_equals_planes<float>(DType::F32, DType::F64);  // the mask converted to the image's dtype
  check_backend_equals_planes<double>(DType::F64, DType::F32);
}
