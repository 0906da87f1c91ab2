#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/ops.h"
#include "tests/gradcheck.h"

using namespace pconv;

namespace {

// Per-channel mean and biased variance of an N×C×(rest) tensor, by plain loops.
struct NaiveStats {
  std::vector<double> mean, var;
  int64_t count = 0;
};
NaiveStats naive_stats(const Tensor& x) {
  const int64_t n = x.size(0), c = x.size(1), inner = x.numel() / (n * c);
  auto v = x.to_double_vector();
  NaiveStats s{std::vector<double>(size_t(c), 0), std::vector<double>(size_t(c), 0), n * inner};
  for (int64_t ch = 0; ch < c; ++ch) {
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < inner; ++i) s.mean[size_t(ch)] += v[size_t((b * c + ch) * inner + i)];
    s.mean[size_t(ch)] /= double(s.count);
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < inner; ++i) {
        const double d = v[size_t((b * c + ch) * inner + i)] - s.mean[size_t(ch)];
        s.var[size_t(ch)] += d * d;
      }
    s.var[size_t(ch)] /= double(s.count);
  }
  return s;
}

std::vector<double> naive_normalize(const Tensor& x, const std::vector<double>& mean,
                                    const std::vector<double>& var, const Tensor& gamma,
                                    const Tensor& beta, double eps) {
  const int64_t n = x.size(0), c = x.size(1), inner = x.numel() / (n * c);
  auto v = x.to_double_vector(), g = gamma.to_double_vector(), b = beta.to_double_vector();
  for (int64_t k = 0; k < x.numel(); ++k) {
    const size_t ch = size_t((k / inner) % c);
    v[size_t(k)] = (v[size_t(k)] - mean[ch]) / std::sqrt(var[ch] + eps) * g[ch] + b[ch];
  }
  return v;
}

Tensor as_tensor(const std::vector<double>& v, const Shape& s) { return Tensor::from_vector(v, s); }

}  // namespace

TEST_CASE("batch_norm: training forward and running-stat update match hand computation") {
  const std::vector<Shape> shapes{{2, 3, 4, 5}, {1, 2, 3, 3}, {4, 1, 1, 1}, {5, 3}, {2, 4, 1, 7}};
  uint64_t seed = 10;
  for (const Shape& s : shapes) {
    for (DType dt : {DType::F64, DType::F32}) {
      CAPTURE(shape_str(s));
      const std::string dtype = dtype_name(dt);
      CAPTURE(dtype);
      Generator gen(seed++);
      const int64_t c = s[1];
      Tensor x = Tensor::randn(s, gen, dt, Device::CPU, 0.7, 2.0);
      Tensor gamma = Tensor::rand({c}, gen, dt, Device::CPU, 0.5, 1.5);
      Tensor beta = Tensor::rand({c}, gen, dt, Device::CPU, -1, 1);
      Tensor rm = Tensor::rand({c}, gen, dt, Device::CPU, -1, 1);
      Tensor rv = Tensor::rand({c}, gen, dt, Device::CPU, 0.5, 2);
      const auto rm0 = rm.to_double_vector(), rv0 = rv.to_double_vector();

      Tensor y = batch_norm(x, gamma, beta, rm, rv, true, true, 0.1, 1e-5);
      const NaiveStats st = naive_stats(x);
      const double tol = dt == DType::F64 ? 1e-12 : 2e-6;
      CHECK(y.shape() == s);
      CHECK(testing::max_rel_diff(y, as_tensor(naive_normalize(x, st.mean, st.var, gamma, beta, 1e-5), s)) < tol);
      // running = 0.9·running + 0.1·batch, with the unbiased variance (n/(n-1)), as PyTorch.
      const double n = double(st.count);
      auto rm1 = rm.to_double_vector(), rv1 = rv.to_double_vector();
      for (size_t k = 0; k < size_t(c); ++k) {
        CHECK(rm1[k] == doctest::Approx(0.9 * rm0[k] + 0.1 * st.mean[k]).epsilon(tol));
        CHECK(rv1[k] == doctest::Approx(0.9 * rv0[k] + 0.1 * st.var[k] * n / (n - 1)).epsilon(tol));
      }
    }
  }
}

TEST_CASE("batch_norm: momentum other than 0.1 and a second step compound") {
  Tensor x = testing::rand_leaf({3, 2, 2, 2}, 5).detach();
  Tensor gamma = Tensor::ones({2}, DType::F64), beta = Tensor::zeros({2}, DType::F64);
  Tensor rm = Tensor::zeros({2}, DType::F64), rv = Tensor::ones({2}, DType::F64);
  batch_norm(x, gamma, beta, rm, rv, true, true, 0.25, 1e-5);
  batch_norm(x, gamma, beta, rm, rv, true, true, 0.25, 1e-5);
  const NaiveStats st = naive_stats(x);
  const double unbiased = double(st.count) / double(st.count - 1);
  for (int64_t k = 0; k < 2; ++k) {
    const double m = st.mean[size_t(k)], v = st.var[size_t(k)] * unbiased;
    CHECK(rm.at({k}) == doctest::Approx(0.75 * (0.25 * m) + 0.25 * m).epsilon(1e-12));
    CHECK(rv.at({k}) == doctest::Approx(0.75 * (0.75 + 0.25 * v) + 0.25 * v).epsilon(1e-12));
  }
}

TEST_CASE("batch_norm: evaluation and frozen modes use and keep the running statistics") {
  Generator gen(21);
  const Shape s{3, 4, 3, 2};
  Tensor x = Tensor::randn(s, gen, DType::F64);
  Tensor gamma = Tensor::rand({4}, gen, DType::F64, Device::CPU, 0.5, 1.5);
  Tensor beta = Tensor::rand({4}, gen, DType::F64, Device::CPU, -1, 1);
  Tensor rm = Tensor::rand({4}, gen, DType::F64, Device::CPU, -1, 1);
  Tensor rv = Tensor::rand({4}, gen, DType::F64, Device::CPU, 0.5, 2);
  const auto rm0 = rm.to_double_vector(), rv0 = rv.to_double_vector();

  // evaluation: running statistics normalise; update_running is ignored (PyTorch eval()).
  Tensor y = batch_norm(x, gamma, beta, rm, rv, false, true, 0.1, 1e-3);
  CHECK(testing::max_rel_diff(y, as_tensor(naive_normalize(x, rm0, rv0, gamma, beta, 1e-3), s)) < 1e-12);
  CHECK(rm.to_double_vector() == rm0);
  CHECK(rv.to_double_vector() == rv0);

  // batch statistics without an update: output normalised by the batch, running stats frozen.
  Tensor y2 = batch_norm(x, gamma, beta, rm, rv, true, false);
  const NaiveStats st = naive_stats(x);
  CHECK(testing::max_rel_diff(y2, as_tensor(naive_normalize(x, st.mean, st.var, gamma, beta, 1e-5), s)) < 1e-12);
  CHECK(rm.to_double_vector() == rm0);
  CHECK(rv.to_double_vector() == rv0);

  // f32 with a large common offset: statistics accumulated in double, two-pass, keep the
  // variance accurate (momentum 1 copies the batch statistics into the running ones).
  Tensor xf = Tensor::randn(s, gen, DType::F32, Device::CPU, 1000.0, 0.01);
  Tensor gf = Tensor::ones({4}), bf = Tensor::zeros({4});
  Tensor rmf = Tensor::zeros({4}), rvf = Tensor::ones({4});
  Tensor yf = batch_norm(xf, gf, bf, rmf, rvf, true, true, 1.0);
  const NaiveStats sf = naive_stats(xf);
  const double unbiased = double(sf.count) / double(sf.count - 1);
  for (int64_t k = 0; k < 4; ++k) {
    CHECK(rmf.at({k}) == doctest::Approx(sf.mean[size_t(k)]).epsilon(1e-7));
    CHECK(rvf.at({k}) == doctest::Approx(sf.var[size_t(k)] * unbiased).epsilon(1e-6));
  }
  // y is limited by the f32 mean: half an ulp at 1000 (3e-5) over std 0.01.
  CHECK(testing::max_rel_diff(yf, as_tensor(naive_normalize(xf, sf.mean, sf.var, gf, bf, 1e-5), s)) < 1e-2);
}

TEST_CASE("batch_norm: f64 gradients in training mode (x, gamma, beta)") {
  for (const Shape& s : {Shape{2, 3, 3, 4}, Shape{1, 2, 2, 3}, Shape{3, 2, 1, 1}, Shape{4, 3}}) {
    CAPTURE(shape_str(s));
    Tensor x = testing::rand_leaf(s, 31, -2, 2);
    Tensor gamma = testing::rand_leaf({s[1]}, 32, 0.5, 1.5);
    Tensor beta = testing::rand_leaf({s[1]}, 33);
    Tensor rm = Tensor::zeros({s[1]}, DType::F64), rv = Tensor::ones({s[1]}, DType::F64);
    auto f = [&](const std::vector<Tensor>& in) {
      return batch_norm(in[0], in[1], in[2], rm, rv, true, false);
    };
    auto r = testing::gradcheck(f, {x, gamma, beta});
    CHECK_MESSAGE(r.ok, r.report);
  }
}

TEST_CASE("batch_norm: f64 gradients with fixed statistics (evaluation / frozen)") {
  const Shape s{2, 3, 3, 2};
  Tensor x = testing::rand_leaf(s, 41, -2, 2);
  Tensor gamma = testing::rand_leaf({3}, 42, 0.5, 1.5);
  Tensor beta = testing::rand_leaf({3}, 43);
  Generator gen(44);
  Tensor rm = Tensor::rand({3}, gen, DType::F64, Device::CPU, -0.5, 0.5);
  Tensor rv = Tensor::rand({3}, gen, DType::F64, Device::CPU, 0.5, 2);
  auto f = [&](const std::vector<Tensor>& in) {
    return batch_norm(in[0], in[1], in[2], rm, rv, false, false);
  };
  auto r = testing::gradcheck(f, {x, gamma, beta});
  CHECK_MESSAGE(r.ok, r.report);

  // Only the affine parameters need gradients (x fixed): the kernel skips gx.
  Tensor xc = x.detach();
  auto r2 = testing::gradcheck(
      [&](const std::vector<Tensor>& in) { return batch_norm(xc, in[0], in[1], rm, rv, true, false); },
      {gamma, beta});
  CHECK_MESSAGE(r2.ok, r2.report);
}

TEST_CASE("batch_norm: errors name the argument and the shapes") {
  Tensor x = Tensor::zeros({2, 3, 4, 4});
  Tensor g3 = Tensor::ones({3}), b3 = Tensor::zeros({3}), g4 = Tensor::ones({4});
  Tensor rm = Tensor::zeros({3}), rv = Tensor::ones({3}), none;
  CHECK_THROWS_WITH_AS(batch_norm(x, g4, b3, rm, rv, true, true),
                       "batch_norm: gamma has shape [4], expected [3] for input [2, 3, 4, 4]", Error);
  Tensor rm4 = Tensor::zeros({4});
  CHECK_THROWS_WITH_AS(batch_norm(x, g3, b3, rm4, rv, false, false),
                       "batch_norm: running_mean has shape [4], expected [3] for input [2, 3, 4, 4]",
                       Error);
  Tensor one = Tensor::zeros({1, 3, 1, 1});
  CHECK_THROWS_WITH_AS(batch_norm(one, g3, b3, rm, rv, true, true),
                       "batch_norm: expected more than 1 value per channel when training, got "
                       "input size [1, 3, 1, 1]",
                       Error);
  // one value per channel is fine with running statistics
  CHECK(batch_norm(one, g3, b3, rm, rv, false, false).shape() == Shape{1, 3, 1, 1});
  CHECK_THROWS_WITH_AS(batch_norm(x, g3, b3, none, none, false, false),
                       "batch_norm: running_mean and running_var are required in evaluation mode, "
                       "input [2, 3, 4, 4]",
                       Error);
  CHECK_THROWS_AS(batch_norm(x.to(DType::F64), g3, b3, rm, rv, true, false), Error);
}
