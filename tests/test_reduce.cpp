#include <doctest/doctest.h>

#include "core/ops.h"
#include "tests/gradcheck.h"

using namespace pconv;
using testing::rand_leaf;

TEST_CASE("reduce: sum and mean over all and over dims match loops") {
  Tensor x = rand_leaf({2, 3, 4, 5}, 21).detach();
  auto v = x.to_double_vector();
  double total = 0;
  for (double e : v) total += e;
  CHECK(sum(x).item() == doctest::Approx(total).epsilon(1e-13));
  CHECK(sum(x).dim() == 0);
  CHECK(mean(x).item() == doctest::Approx(total / 120).epsilon(1e-13));
  // per channel over N, H, W (batch-norm and bias gradients)
  Tensor pc = sum(x, {0, 2, 3}, true);
  REQUIRE(pc.shape() == Shape{1, 3, 1, 1});
  for (int64_t c = 0; c < 3; ++c) {
    double s = 0;
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t h = 0; h < 4; ++h)
        for (int64_t w = 0; w < 5; ++w) s += x.at({n, c, h, w});
    CHECK(pc.at({0, c, 0, 0}) == doctest::Approx(s).epsilon(1e-13));
  }
  // innermost kept, middle reduced, negative dims, no keepdim
  Tensor m = mean(x, {1, -2});
  REQUIRE(m.shape() == Shape{2, 5});
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t w = 0; w < 5; ++w) {
      double s = 0;
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t h = 0; h < 4; ++h) s += x.at({n, c, h, w});
      CHECK(m.at({n, w}) == doctest::Approx(s / 12).epsilon(1e-13));
    }
  CHECK_THROWS_WITH_AS(sum(x, {4}), "sum: dim 4 out of range for shape [2, 3, 4, 5]", Error);
}

TEST_CASE("reduce: f32 sums of many elements stay accurate") {
  Tensor x = Tensor::full({1 << 20}, 0.1, DType::F32);
  CHECK(sum(x).item() == doctest::Approx(double(0.1f) * (1 << 20)).epsilon(1e-7));
}

TEST_CASE("reduce: gradients by finite differences") {
  Tensor x = rand_leaf({2, 3, 4, 5}, 22);
  for (auto dims : std::vector<std::vector<int64_t>>{{0}, {1, 3}, {0, 2, 3}, {3}}) {
    auto r1 = testing::gradcheck([&](auto& v) { return sum(v[0], dims, false); }, {x});
    CHECK_MESSAGE(r1.ok, r1.report);
    auto r2 = testing::gradcheck([&](auto& v) { return mean(v[0], dims, true); }, {x});
    CHECK_MESSAGE(r2.ok, r2.report);
  }
  auto r = testing::gradcheck([](auto& v) { return mul(mean(v[0]), sum(v[0])); }, {x});
  CHECK_MESSAGE(r.ok, r.report);
}
