#include <doctest/doctest.h>

#include "core/ops.h"
#include "tests/gradcheck.h"

using namespace pconv;

TEST_CASE("tensor: creation, reshape view, element access") {
  Tensor t = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(t.numel() == 6);
  CHECK(t.at({1, 2}) == 6);
  Tensor v = t.reshape({3, -1});
  CHECK(v.shape() == Shape{3, 2});
  v.set({0, 1}, 10);  // a view shares storage
  CHECK(t.at({0, 1}) == 10);
  CHECK_THROWS_WITH_AS(t.reshape({4, 2}), "reshape: cannot view [2, 3] as [4, 2]", Error);
  Tensor c = t.clone();
  c.set({0, 0}, -1);
  CHECK(t.at({0, 0}) == 1);
  Tensor d = t.to(DType::F64);
  CHECK(d.dtype() == DType::F64);
  CHECK(d.at({1, 0}) == 4);
  CHECK(Tensor::zeros({2, 2}).at({1, 1}) == 0);
  CHECK(Tensor::full({3}, 2.5, DType::F64).at({2}) == 2.5);
}

TEST_CASE("tensor: seeded random numbers are reproducible and well spread") {
  Generator g1(7), g2(7);
  Tensor a = Tensor::randn({1000}, g1, DType::F64), b = Tensor::randn({1000}, g2, DType::F64);
  CHECK(a.to_double_vector() == b.to_double_vector());
  auto v = a.to_double_vector();
  double s = 0, s2 = 0;
  for (double x : v) s += x, s2 += x * x;
  CHECK(std::abs(s / 1000) < 0.1);
  CHECK(std::abs(s2 / 1000 - 1) < 0.15);
  Tensor u = Tensor::rand({1000}, g1, DType::F32, Device::CPU, 2, 3);
  for (float x : u.to_float_vector()) CHECK((x >= 2 && x < 3));
}

TEST_CASE("tensor: bf16 and f16 round trips") {
  Tensor t = Tensor::from_vector(std::vector<float>{1.0f, -2.5f, 0.1f, 65504.0f}, {4});
  auto h = t.to(DType::F16).to(DType::F32).to_float_vector();
  CHECK(h[0] == 1.0f);
  CHECK(h[1] == -2.5f);
  CHECK(std::abs(h[2] - 0.1f) < 1e-4);
  CHECK(h[3] == 65504.0f);
  auto b = t.to(DType::BF16).to(DType::F32).to_float_vector();
  CHECK(b[1] == -2.5f);
  CHECK(std::abs(b[2] - 0.1f) < 1e-3);
}

TEST_CASE("autograd: shared subexpressions accumulate, graph is freed, NoGradGuard records nothing") {
  Tensor x = testing::rand_leaf({3}, 1);
  Tensor y = mul(x, x);          // x²
  Tensor z = sum(add(y, x));     // Σ x² + x
  z.backward();
  auto gx = x.grad().to_double_vector(), xv = x.to_double_vector();
  for (size_t i = 0; i < 3; ++i) CHECK(gx[i] == doctest::Approx(2 * xv[i] + 1).epsilon(1e-15));
  CHECK_THROWS_AS(z.backward(), Error);  // freed
  {
    NoGradGuard ng;
    Tensor w = mul(x, x);
    CHECK(!w.requires_grad());
    CHECK(!w.grad_fn());
  }
  // gradients accumulate across backward calls until zero_grad
  Tensor x2 = testing::rand_leaf({2}, 2);
  sum(x2).backward();
  sum(x2).backward();
  CHECK(x2.grad().at({0}) == 2.0);
  x2.zero_grad();
  CHECK(!x2.grad().defined());
}

TEST_CASE("tensor: a shape whose size overflows is refused, not wrapped to a small allocation") {
  // 2^32 · 2^32 elements wraps to 0 in 64 bits; 2^62 f32 elements is 2^64 bytes.
  CHECK_THROWS_WITH_AS(Tensor::empty({int64_t(1) << 32, int64_t(1) << 32}),
                       "empty: shape [4294967296, 4294967296] has more elements than memory can hold", Error);
  CHECK_THROWS_AS(Tensor::empty({int64_t(1) << 62}), Error);
  CHECK_THROWS_AS(Tensor::zeros({3, -1}), Error);
  CHECK(Tensor::empty({0, int64_t(1) << 62}).numel() == 0);
}
