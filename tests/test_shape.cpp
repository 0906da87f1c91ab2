#include <doctest/doctest.h>

#include <vector>

#include "core/ops.h"
#include "tests/gradcheck.h"

using namespace pconv;

namespace {

// Row-major multi-index of flat element k of shape s.
std::vector<int64_t> unravel(int64_t k, const Shape& s) {
  std::vector<int64_t> idx(s.size());
  for (size_t d = s.size(); d-- > 0;) {
    idx[d] = k % s[d];
    k /= s[d];
  }
  return idx;
}
int64_t ravel(const std::vector<int64_t>& idx, const Shape& s) {
  int64_t k = 0;
  for (size_t d = 0; d < s.size(); ++d) k = k * s[d] + idx[d];
  return k;
}

// out[idx] = the input whose range along dim holds idx[dim], at the shifted index.
std::vector<double> naive_concat(const std::vector<Tensor>& xs, int64_t dim, const Shape& out) {
  std::vector<double> r(size_t(shape_numel(out)));
  for (int64_t k = 0; k < shape_numel(out); ++k) {
    auto idx = unravel(k, out);
    size_t i = 0;
    while (idx[size_t(dim)] >= xs[i].size(dim)) idx[size_t(dim)] -= xs[i++].size(dim);
    r[size_t(k)] = xs[i].to_double_vector()[size_t(ravel(idx, xs[i].shape()))];
  }
  return r;
}

}  // namespace

TEST_CASE("concat: forward along every dim against naive indexing") {
  Generator gen(1);
  struct Case {
    std::vector<Shape> shapes;
    int64_t dim;
  };
  const std::vector<Case> cases{{{{2, 3, 4, 5}, {2, 1, 4, 5}, {2, 2, 4, 5}}, 1},
                                {{{1, 3, 2, 2}, {2, 3, 2, 2}}, 0},
                                {{{2, 2, 3, 4}, {2, 2, 1, 4}}, 2},
                                {{{2, 2, 3, 4}, {2, 2, 3, 2}, {2, 2, 3, 1}}, -1},
                                {{{3, 2}, {3, 0}, {3, 4}}, 1},  // an empty piece
                                {{{5}}, 0}};
  for (const Case& c : cases) {
    for (DType dt : {DType::F32, DType::F64, DType::BF16}) {
      CAPTURE(c.dim);
      const std::string dtype = dtype_name(dt);
      CAPTURE(dtype);
      std::vector<Tensor> xs;
      for (const Shape& s : c.shapes) xs.push_back(Tensor::randn(s, gen).to(dt));
      Tensor y = concat(xs, c.dim);
      const int64_t d = c.dim < 0 ? c.dim + xs[0].dim() : c.dim;
      Shape expect = c.shapes[0];
      expect[size_t(d)] = 0;
      for (const Shape& s : c.shapes) expect[size_t(d)] += s[size_t(d)];
      REQUIRE(y.shape() == expect);
      CHECK(y.dtype() == dt);
      CHECK(y.to_double_vector() == naive_concat(xs, d, expect));
    }
  }
}

TEST_CASE("concat: f64 gradients are the slices, inputs without grad are skipped") {
  Tensor a = testing::rand_leaf({2, 3, 2, 3}, 2);
  Tensor b = testing::rand_leaf({2, 1, 2, 3}, 3).detach();  // held fixed
  Tensor c = testing::rand_leaf({2, 2, 2, 3}, 4);
  auto r = testing::gradcheck([](const std::vector<Tensor>& in) { return concat(in, 1); }, {a, b, c});
  CHECK_MESSAGE(r.ok, r.report);
  Tensor p = testing::rand_leaf({2, 2, 3, 1}, 5), q = testing::rand_leaf({2, 2, 3, 4}, 6);
  r = testing::gradcheck([](const std::vector<Tensor>& in) { return concat(in, 3); }, {p, q});
  CHECK_MESSAGE(r.ok, r.report);
  Tensor u = testing::rand_leaf({1, 2, 2}, 7), v = testing::rand_leaf({3, 2, 2}, 8);
  r = testing::gradcheck([](const std::vector<Tensor>& in) { return concat(in, 0); }, {u, v});
  CHECK_MESSAGE(r.ok, r.report);
}

TEST_CASE("concat: masks join as groups of a then b") {
  Generator gen(3);
  Tensor m1 = Tensor::rand({2, 1, 4, 4}, gen), m2 = Tensor::rand({2, 1, 4, 4}, gen),
         m3 = Tensor::rand({2, 1, 4, 4}, gen);
  Mask a{{4, m1}, {2, m2}}, b{{3, m3}};
  Mask ab = concat(a, b);
  REQUIRE(ab.size() == 3);
  CHECK(ab[0].channels == 4);
  CHECK(ab[1].channels == 2);
  CHECK(ab[2].channels == 3);
  CHECK(ab[0].mask.same(m1));
  CHECK(ab[2].mask.same(m3));
  CHECK(concat(Mask{}, b).size() == 1);
  Mask wrong{{3, Tensor::ones({2, 1, 4, 5})}};
  CHECK_THROWS_WITH_AS(concat(a, wrong),
                       "concat (mask): mask group 2 is [2, 1, 4, 5], mask group 0 is "
                       "[2, 1, 4, 4] (N, H, W must agree)",
                       Error);
  Mask batch{{3, Tensor::ones({1, 1, 4, 4})}};
  CHECK_THROWS_AS(concat(a, batch), Error);
  Mask wide{{3, Tensor::ones({2, 3, 4, 4})}};
  CHECK_THROWS_WITH_AS(concat(a, wide),
                       "concat (mask): mask group 2 must be N×1×H×W, got [2, 3, 4, 4]", Error);
}

TEST_CASE("slice: forward, gradient and ranges") {
  Generator gen(4);
  Tensor x = Tensor::randn({3, 4, 5}, gen, DType::F64);
  for (int64_t dim : {0, 1, 2, -1}) {
    const int64_t d = dim < 0 ? dim + 3 : dim;
    const int64_t len = x.size(d);
    for (auto [start, end] : std::vector<std::pair<int64_t, int64_t>>{{0, len}, {1, len - 1}, {len - 1, len}, {2, 2}}) {
      Tensor y = slice(x, dim, start, end);
      Shape expect = x.shape();
      expect[size_t(d)] = end - start;
      REQUIRE(y.shape() == expect);
      bool ok = true;
      for (int64_t k = 0; k < y.numel(); ++k) {
        auto idx = unravel(k, expect);
        idx[size_t(d)] += start;
        ok = ok && y.to_double_vector()[size_t(k)] == x.to_double_vector()[size_t(ravel(idx, x.shape()))];
      }
      CHECK(ok);
    }
  }
  Tensor leaf = testing::rand_leaf({2, 5, 3}, 9);
  auto r = testing::gradcheck([](const std::vector<Tensor>& in) { return slice(in[0], 1, 1, 4); }, {leaf});
  CHECK_MESSAGE(r.ok, r.report);
  CHECK_THROWS_WITH_AS(slice(x, 1, 2, 5), "slice: [2, 5) is not a range inside dim 1 of [3, 4, 5]", Error);
  CHECK_THROWS_WITH_AS(slice(x, 3, 0, 1), "slice: dim 3 is out of range for rank 3", Error);
}

TEST_CASE("pad2d and crop2d: forward against naive loops, gradients, and crop undoes pad") {
  Generator gen(5);
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor x = Tensor::randn({2, 3, 4, 5}, gen, dt);
    const int64_t t = 1, b = 2, l = 3, r = 0;
    Tensor y = pad2d(x, t, b, l, r, -0.5);
    REQUIRE(y.shape() == Shape{2, 3, 7, 8});
    bool ok = true;
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t i = 0; i < 7; ++i)
          for (int64_t j = 0; j < 8; ++j) {
            const bool inside = i >= t && i < t + 4 && j >= l && j < l + 5;
            ok = ok && y.at({n, c, i, j}) == (inside ? x.at({n, c, i - t, j - l}) : -0.5);
          }
    CHECK(ok);
    CHECK(crop2d(y, t, l, 4, 5).to_double_vector() == x.to_double_vector());
    Tensor cr = crop2d(x, 1, 2, 2, 3);
    REQUIRE(cr.shape() == Shape{2, 3, 2, 3});
    CHECK(cr.at({1, 2, 1, 2}) == x.at({1, 2, 2, 4}));
    CHECK(cr.at({0, 1, 0, 0}) == x.at({0, 1, 1, 2}));
  }
  // no padding is a copy, not an alias
  Tensor z = Tensor::ones({1, 1, 2, 2});
  Tensor zc = pad2d(z, 0, 0, 0, 0);
  CHECK(!zc.same(z));
  CHECK(zc.to_double_vector() == z.to_double_vector());
  // rank 2 works too (the last two dims)
  CHECK(pad2d(Tensor::ones({2, 2}), 1, 1, 1, 1).shape() == Shape{4, 4});

  Tensor leaf = testing::rand_leaf({2, 2, 3, 4}, 10);
  auto rp = testing::gradcheck(
      [](const std::vector<Tensor>& in) { return pad2d(in[0], 2, 1, 0, 3, 0.25); }, {leaf});
  CHECK_MESSAGE(rp.ok, rp.report);
  auto rc = testing::gradcheck(
      [](const std::vector<Tensor>& in) { return crop2d(in[0], 1, 1, 2, 2); }, {leaf});
  CHECK_MESSAGE(rc.ok, rc.report);
}

TEST_CASE("shape ops: errors name the op, the argument and the shapes") {
  Tensor a = Tensor::zeros({2, 3, 4, 4}), b = Tensor::zeros({2, 3, 5, 4});
  CHECK_THROWS_WITH_AS(concat({a, b}, 1),
                       "concat: input 1 has shape [2, 3, 5, 4], input 0 has [2, 3, 4, 4] (must "
                       "agree except in dim 1)",
                       Error);
  CHECK_THROWS_WITH_AS(concat({a, a.to(DType::F64)}, 1), "concat: input 0 is f32, input 1 is f64", Error);
  CHECK_THROWS_WITH_AS(concat({}, 1), "concat: no tensors to concatenate", Error);
  CHECK_THROWS_WITH_AS(concat({a, Tensor::zeros({2, 3, 4})}, 1),
                       "concat: input 1 has shape [2, 3, 4], input 0 has [2, 3, 4, 4] (must agree "
                       "except in dim 1)",
                       Error);
  CHECK_THROWS_WITH_AS(pad2d(a, -1, 0, 0, 0),
                       "pad2d: padding (top -1, bottom 0, left 0, right 0) must not be negative, "
                       "input [2, 3, 4, 4]",
                       Error);
  CHECK_THROWS_WITH_AS(crop2d(a, 2, 0, 3, 4),
                       "crop2d: window 3×4 at (2, 0) does not fit input [2, 3, 4, 4]", Error);
}
