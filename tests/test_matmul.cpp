#include <doctest/doctest.h>

#include "core/ops.h"
#include "tests/gradcheck.h"

using namespace pconv;
using testing::rand_leaf;

namespace {
// Naive op(A)·op(B) for one batch entry.
double ref(const Tensor& a, bool ta, const Tensor& b, bool tb, int64_t bi, int64_t i, int64_t j) {
  auto get = [](const Tensor& t, int64_t batch, int64_t r, int64_t c) {
    return t.dim() == 3 ? t.at({t.size(0) == 1 ? 0 : batch, r, c}) : t.at({r, c});
  };
  int64_t k = ta ? a.size(-2) : a.size(-1);
  double s = 0;
  for (int64_t q = 0; q < k; ++q)
    s += (ta ? get(a, bi, q, i) : get(a, bi, i, q)) * (tb ? get(b, bi, j, q) : get(b, bi, q, j));
  return s;
}
}  // namespace

TEST_CASE("matmul: 2-D, batched, transposed and broadcast against loops") {
  struct Case { Shape a, b; bool ta, tb; };
  for (auto c : {Case{{3, 4}, {4, 5}, false, false}, Case{{4, 3}, {4, 5}, true, false},
                 Case{{3, 4}, {5, 4}, false, true}, Case{{2, 4, 3}, {2, 5, 4}, true, true},
                 Case{{2, 3, 6}, {2, 3, 6}, false, true}, Case{{1, 3, 4}, {3, 4, 2}, false, false}}) {
    Tensor a = rand_leaf(c.a, 31).detach(), b = rand_leaf(c.b, 32).detach();
    Tensor y = matmul(a, b, c.ta, c.tb);
    bool batched = y.dim() == 3;
    int64_t batch = batched ? y.size(0) : 1;
    for (int64_t bi = 0; bi < batch; ++bi)
      for (int64_t i = 0; i < y.size(-2); ++i)
        for (int64_t j = 0; j < y.size(-1); ++j)
          CHECK((batched ? y.at({bi, i, j}) : y.at({i, j})) ==
                doctest::Approx(ref(a, c.ta, b, c.tb, bi, i, j)).epsilon(1e-13));
  }
  CHECK_THROWS_WITH_AS(matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})),
                       "matmul: inner dimensions differ: [2, 3] × [4, 5]", Error);
}

TEST_CASE("matmul: Gram matrix gradient and transpose by finite differences") {
  Tensor f = rand_leaf({2, 3, 6}, 33);
  auto r = testing::gradcheck([](auto& v) { return matmul(v[0], v[0], false, true); }, {f});
  CHECK_MESSAGE(r.ok, r.report);
  Tensor a = rand_leaf({4, 3}, 34), b = rand_leaf({2, 4, 5}, 35);
  for (bool ta : {false, true}) {
    auto r2 = testing::gradcheck([ta](auto& v) { return matmul(ta ? transpose(v[0], 0, 1) : v[0].reshape({1, 4, 3}), v[1], !ta, false); }, {a, b});
    CHECK_MESSAGE(r2.ok, r2.report);
  }
  Tensor x = rand_leaf({2, 3, 4}, 36);
  Tensor t = transpose(x, 1, 2);
  REQUIRE(t.shape() == Shape{2, 4, 3});
  CHECK(t.at({1, 3, 2}) == x.at({1, 2, 3}));
  auto r3 = testing::gradcheck([](auto& v) { return transpose(v[0], -1, -2); }, {x});
  CHECK_MESSAGE(r3.ok, r3.report);
}
