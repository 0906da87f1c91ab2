#include <doctest/doctest.h>

#include <cmath>

#include "core/ops.h"
#include "tests/gradcheck.h"

using namespace pconv;
using testing::gradcheck;
using testing::rand_leaf;

namespace {
// Naive broadcast reference: element (i0..i3) of a 4-D result from 4-D (padded) inputs.
double bget(const Tensor& t, const Shape& ys, int64_t flat) {
  Shape s = t.shape();
  while (s.size() < ys.size()) s.insert(s.begin(), 1);
  int64_t idx = 0, rem = flat, mul = 1;
  std::vector<int64_t> coord(ys.size());
  for (size_t d = ys.size(); d-- > 0;) coord[d] = rem % ys[d], rem /= ys[d];
  for (size_t d = ys.size(); d-- > 0;) {
    idx += (s[d] == 1 ? 0 : coord[d]) * mul;
    mul *= s[d];
  }
  return t.to_double_vector()[size_t(idx)];
}
}  // namespace

TEST_CASE("elementwise: binary ops broadcast like numpy") {
  struct Case { Shape a, b; };
  for (auto c : {Case{{2, 3, 4, 5}, {1, 3, 1, 1}}, Case{{2, 3, 4, 5}, {5}}, Case{{2, 3, 4, 5}, {1}},
                 Case{{3, 1}, {1, 4}}, Case{{2, 3, 4, 5}, {2, 3, 4, 5}}, Case{{3, 1, 5}, {2, 1, 3, 1, 1}}}) {
    Tensor a = rand_leaf(c.a, 1).detach(), b = rand_leaf(c.b, 2, 0.5, 2).detach();
    Shape ys = broadcast_shape("test", c.a, c.b);
    Tensor ys_add = add(a, b), ys_sub = sub(a, b), ys_mul = mul(a, b), ys_div = div(a, b);
    REQUIRE(ys_add.shape() == ys);
    auto va = ys_add.to_double_vector(), vs = ys_sub.to_double_vector(), vm = ys_mul.to_double_vector(),
         vd = ys_div.to_double_vector();
    for (int64_t i = 0; i < shape_numel(ys); ++i) {
      double x = bget(a, ys, i), y = bget(b, ys, i);
      CHECK(va[size_t(i)] == doctest::Approx(x + y).epsilon(1e-14));
      CHECK(vs[size_t(i)] == doctest::Approx(x - y).epsilon(1e-14));
      CHECK(vm[size_t(i)] == doctest::Approx(x * y).epsilon(1e-14));
      CHECK(vd[size_t(i)] == doctest::Approx(x / y).epsilon(1e-14));
    }
  }
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4});
  CHECK_THROWS_WITH_AS(add(a, b), "add: shapes [2, 3] and [4] do not broadcast", Error);
  CHECK_THROWS_WITH_AS(mul(a, Tensor::zeros({2, 3}, DType::F64)), "mul: a is f32, b is f64", Error);
}

TEST_CASE("elementwise: unary ops against std:: math") {
  Tensor x = rand_leaf({3, 7}, 3, -2, 2).detach();
  Tensor p = rand_leaf({3, 7}, 4, 0.1, 3).detach();
  auto xv = x.to_double_vector(), pv = p.to_double_vector();
  auto check = [](const Tensor& t, auto f, const std::vector<double>& in) {
    auto v = t.to_double_vector();
    for (size_t i = 0; i < v.size(); ++i) CHECK(v[i] == doctest::Approx(f(in[i])).epsilon(1e-14));
  };
  check(neg(x), [](double v) { return -v; }, xv);
  check(abs(x), [](double v) { return std::abs(v); }, xv);
  check(exp(x), [](double v) { return std::exp(v); }, xv);
  check(log(p), [](double v) { return std::log(v); }, pv);
  check(sqrt(p), [](double v) { return std::sqrt(v); }, pv);
  check(square(x), [](double v) { return v * v; }, xv);
  check(relu(x), [](double v) { return v > 0 ? v : 0; }, xv);
  check(leaky_relu(x, 0.2), [](double v) { return v > 0 ? v : 0.2 * v; }, xv);
  check(clamp01(x), [](double v) { return std::min(1.0, std::max(0.0, v)); }, xv);
  check(step(x, 0.5), [](double v) { return v > 0.5 ? 1.0 : 0.0; }, xv);
  check(add(x, 1.5), [](double v) { return v + 1.5; }, xv);
  check(mul(x, -3.0), [](double v) { return -3 * v; }, xv);
  check(rsub(1.0, x), [](double v) { return 1 - v; }, xv);
  // f32 path
  check(relu(x.to(DType::F32)), [](double v) { return double(float(v) > 0 ? float(v) : 0.f); }, xv);
}

TEST_CASE("elementwise: gradients by finite differences") {
  // Values kept away from the kinks of relu/abs/clamp (|x| > 0.05, 0.05 from 0 and 1).
  auto away = [](Tensor t) {
    double* p = t.data<double>();
    for (int64_t i = 0; i < t.numel(); ++i)
      if (std::abs(p[i]) < 0.05 || std::abs(p[i] - 1) < 0.05) p[i] += 0.12;
    return t;
  };
  Tensor a = away(rand_leaf({2, 3, 4, 4}, 11, -1.5, 1.5));
  Tensor b = rand_leaf({1, 3, 1, 1}, 12, 0.5, 2);
  Tensor c = rand_leaf({4}, 13, 0.5, 2);
  std::vector<std::pair<const char*, testing::GradFn>> fns = {
      {"add", [](auto& v) { return add(v[0], v[1]); }},
      {"sub", [](auto& v) { return sub(v[0], v[2]); }},
      {"mul", [](auto& v) { return mul(v[0], v[1]); }},
      {"div", [](auto& v) { return div(v[0], v[2]); }},
      {"scalars", [](auto& v) { return rsub(2.0, add(mul(v[0], 3.0), 0.5)); }},
      {"neg abs", [](auto& v) { return abs(neg(v[0])); }},
      {"exp log sqrt", [](auto& v) { return sqrt(log(add(exp(v[0]), 1.0))); }},
      {"square", [](auto& v) { return square(v[0]); }},
      {"relu", [](auto& v) { return relu(v[0]); }},
      {"leaky", [](auto& v) { return leaky_relu(v[0], 0.2); }},
      {"clamp01", [](auto& v) { return clamp01(v[0]); }},
      {"shared", [](auto& v) { return mul(add(v[0], v[1]), sub(v[0], v[2])); }},
  };
  for (auto& [name, f] : fns) {
    const std::string op = name;
    CAPTURE(op);
    auto r = gradcheck(f, {a, b, c});
    CHECK_MESSAGE(r.ok, r.report);
  }
}

TEST_CASE("elementwise: kinks give the conventional subgradient 0") {
  Tensor x = Tensor::from_vector(std::vector<double>{0.0, -1.0, 2.0}, {3});
  x.set_requires_grad(true);
  sum(add(relu(x), abs(x))).backward();
  auto g = x.grad().to_double_vector();
  CHECK(g[0] == 0.0);
  CHECK(g[1] == -1.0);
  CHECK(g[2] == 2.0);
}

TEST_CASE("elementwise: NaN passes through relu and leaky_relu (a broken weight is not hidden)") {
  const double nan = std::nan("");
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor x = Tensor::from_vector(std::vector<double>{nan, -1.0, 2.0}, {3}).to(dt);
    for (const Tensor& y : {relu(x), leaky_relu(x, 0.2)}) {
      const auto v = y.to_double_vector();
      CHECK(std::isnan(v[0]));
      CHECK(v[2] == 2.0);
    }
  }
}
