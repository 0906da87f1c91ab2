// The gradient checker is itself tested (a wrong backward must fail it), then used where the
// op files had no check of their own: exp, log and sqrt each alone, matmul with trans_b on two
// operands and with a broadcast b, transpose of non-adjacent dims, clone, to(dtype),
// imagenet_normalize, BatchNorm without affine parameters, and the whole UNet with every
// parameter tensor, in training and in fine-tune mode.
#include <doctest/doctest.h>

#include "core/autograd.h"
#include "core/data/imagenet.h"
#include "core/ops.h"
#include "models/pconv_unet.h"
#include "tests/gradcheck.h"

using namespace pconv;
using testing::gradcheck;
using testing::GradcheckOptions;
using testing::rand_leaf;

namespace {

// y = x², with the backward given: the right one is 2·x·gy.
Tensor square_with(const Tensor& x, std::function<Tensor(const Tensor& x, const Tensor& gy)> backward) {
  Tensor y;
  {
    NoGradGuard no_grad;
    y = mul(x, x);
  }
  Tensor xd = x.detach();
  return record(y, "square_with", {x}, [xd, backward](const Node&, const Tensor& gy) {
    return std::vector<Tensor>{backward(xd, gy)};
  });
}

// y = a·b elementwise, the backward of b given.
Tensor product_with(const Tensor& a, const Tensor& b,
                    std::function<Tensor(const Tensor& a, const Tensor& gy)> backward_b) {
  Tensor y;
  {
    NoGradGuard no_grad;
    y = mul(a, b);
  }
  Tensor ad = a.detach(), bd = b.detach();
  return record(y, "product_with", {a, b}, [ad, bd, backward_b](const Node&, const Tensor& gy) {
    return std::vector<Tensor>{mul(gy, bd), backward_b(ad, gy)};
  });
}

// A copy of t with element i scaled by f.
Tensor scale_one(const Tensor& t, int64_t i, double f) {
  std::vector<double> v = t.to_double_vector();
  v[size_t(i)] *= f;
  return Tensor::from_vector(v, t.shape());
}

}  // namespace

TEST_CASE("gradcheck: the right backward passes, every kind of wrong one fails") {
  Tensor x = rand_leaf({3, 5}, 1, 0.5, 2);
  auto right = [](const Tensor& xd, const Tensor& gy) { return mul(mul(gy, xd), 2.0); };
  auto r = gradcheck([&](auto& in) { return square_with(in[0], right); }, {x});
  CHECK_MESSAGE(r.ok, r.report);
  CHECK(r.checked == 15);

  struct Wrong {
    const char* what;
    std::function<Tensor(const Tensor&, const Tensor&)> backward;
  };
  const std::vector<Wrong> wrongs = {
      {"factor 2 missing", [](const Tensor& xd, const Tensor& gy) { return mul(gy, xd); }},
      {"sign flipped", [](const Tensor& xd, const Tensor& gy) { return mul(mul(gy, xd), -2.0); }},
      {"off by 0.1 %", [](const Tensor& xd, const Tensor& gy) { return mul(mul(gy, xd), 2.002); }},
      {"one element of 15 off by 1 %",
       [](const Tensor& xd, const Tensor& gy) { return scale_one(mul(mul(gy, xd), 2.0), 7, 1.01); }},
      {"gradient of the output ignored", [](const Tensor& xd, const Tensor&) { return mul(xd, 2.0); }},
      {"zero", [](const Tensor& xd, const Tensor&) { return Tensor::zeros(xd.shape(), DType::F64); }},
  };
  for (const Wrong& w : wrongs) {
    CAPTURE(w.what);
    auto bad = gradcheck([&](auto& in) { return square_with(in[0], w.backward); }, {x});
    CHECK_FALSE(bad.ok);
    CHECK(bad.report.find("input 0 [") != std::string::npos);
  }

  // The wrong gradient of a second input is found and named; the first input's is right.
  Tensor a = rand_leaf({4}, 2), b = rand_leaf({4}, 3);
  auto swapped = gradcheck(
      [&](auto& in) { return product_with(in[0], in[1], [](const Tensor& ad, const Tensor&) { return ad; }); },
      {a, b});
  CHECK_FALSE(swapped.ok);
  CHECK(swapped.report.find("input 1 [") != std::string::npos);
  CHECK(swapped.report.find("input 0 [") == std::string::npos);
  auto missing = gradcheck(
      [&](auto& in) { return product_with(in[0], in[1], [](const Tensor&, const Tensor&) { return Tensor{}; }); },
      {a, b});
  CHECK_FALSE(missing.ok);  // an input that requires grad but gets none
  auto fine = gradcheck(
      [&](auto& in) { return product_with(in[0], in[1], [](const Tensor& ad, const Tensor& gy) { return mul(gy, ad); }); },
      {a, b});
  CHECK_MESSAGE(fine.ok, fine.report);
}

TEST_CASE("gradcheck: exp, log and sqrt each on its own") {
  Tensor any = rand_leaf({2, 3, 4}, 10, -2, 2), positive = rand_leaf({2, 3, 4}, 11, 0.3, 3);
  auto r = gradcheck([](auto& in) { return exp(in[0]); }, {any});
  CHECK_MESSAGE(r.ok, r.report);
  r = gradcheck([](auto& in) { return log(in[0]); }, {positive});
  CHECK_MESSAGE(r.ok, r.report);
  r = gradcheck([](auto& in) { return sqrt(in[0]); }, {positive});
  CHECK_MESSAGE(r.ok, r.report);
  CHECK(r.checked == 24);
}

TEST_CASE("gradcheck: matmul with trans_b on two different operands, and with a broadcast b") {
  struct Case {
    Shape a, b;
    bool trans_a, trans_b;
  };
  for (const Case& c : {Case{{3, 4}, {5, 4}, false, true},         // 2-D, a·bᵀ
                        Case{{2, 3, 4}, {2, 5, 4}, false, true},   // batched, a·bᵀ
                        Case{{2, 4, 3}, {2, 5, 4}, true, true},    // aᵀ·bᵀ
                        Case{{2, 3, 4}, {1, 5, 4}, false, true},   // b broadcast over the batch
                        Case{{3, 3, 4}, {4, 5}, false, false},     // 2-D b against a batch
                        Case{{2, 3, 4}, {5, 4}, false, true},      // 2-D b, transposed
                        Case{{1, 3, 4}, {2, 4, 5}, false, false}}) {  // a broadcast
    CAPTURE(shape_str(c.a));
    CAPTURE(shape_str(c.b));
    Tensor a = rand_leaf(c.a, 20), b = rand_leaf(c.b, 21);
    auto r = gradcheck([&](auto& in) { return matmul(in[0], in[1], c.trans_a, c.trans_b); }, {a, b});
    CHECK_MESSAGE(r.ok, r.report);
    CHECK(r.checked == a.numel() + b.numel());
  }
}

TEST_CASE("gradcheck: transpose of non-adjacent dims, clone, to(dtype)") {
  Tensor x3 = rand_leaf({2, 3, 4}, 30), x4 = rand_leaf({2, 3, 4, 5}, 31);
  // The values first: y[k][j][i] = x[i][j][k].
  Tensor t = transpose(x3, 0, 2);
  REQUIRE(t.shape() == Shape{4, 3, 2});
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t k = 0; k < 4; ++k) CHECK(t.at({k, j, i}) == x3.at({i, j, k}));
  CHECK(transpose(x4, 1, 3).at({1, 4, 2, 0}) == x4.at({1, 0, 2, 4}));
  auto r = gradcheck([](auto& in) { return transpose(in[0], 0, 2); }, {x3});
  CHECK_MESSAGE(r.ok, r.report);
  r = gradcheck([](auto& in) { return transpose(in[0], 1, 3); }, {x4});
  CHECK_MESSAGE(r.ok, r.report);
  r = gradcheck([](auto& in) { return transpose(in[0], 3, 0); }, {x4});
  CHECK_MESSAGE(r.ok, r.report);

  // clone keeps the graph: the gradient reaches x through both the clone and x itself.
  r = gradcheck([](auto& in) { return mul(in[0].clone(), add(in[0], 1.0)); }, {x3});
  CHECK_MESSAGE(r.ok, r.report);

  // f64 → f32 → f64: f32 rounds at ~6e-8, so the step and the tolerance are wider.
  GradcheckOptions o;
  o.eps = 1e-2;
  o.rtol = 1e-4;
  o.atol = 1e-6;
  r = gradcheck([](auto& in) { return mul(mul(in[0].to(DType::F32), 3.0).to(DType::F64), in[0]); }, {x3}, o);
  CHECK_MESSAGE(r.ok, r.report);
}

TEST_CASE("gradcheck: imagenet_normalize and imagenet_denormalize") {
  Tensor batch = rand_leaf({2, 3, 4, 5}, 40, 0, 1), one = rand_leaf({3, 4, 2}, 41, 0, 1);
  auto r = gradcheck([](auto& in) { return imagenet_normalize(in[0]); }, {batch});
  CHECK_MESSAGE(r.ok, r.report);
  r = gradcheck([](auto& in) { return imagenet_normalize(in[0]); }, {one});
  CHECK_MESSAGE(r.ok, r.report);
  r = gradcheck([](auto& in) { return imagenet_denormalize(in[0]); }, {batch});
  CHECK_MESSAGE(r.ok, r.report);
}

TEST_CASE("gradcheck: BatchNorm without affine parameters, batch and running statistics") {
  Tensor x = rand_leaf({3, 2, 3, 2}, 50, -2, 2);
  Generator gen(51);
  Tensor rm = Tensor::rand({2}, gen, DType::F64, Device::CPU, -0.5, 0.5);
  Tensor rv = Tensor::rand({2}, gen, DType::F64, Device::CPU, 0.5, 2);
  for (bool batch_stats : {true, false}) {
    CAPTURE(batch_stats);
    auto r = gradcheck([&](auto& in) { return batch_norm(in[0], Tensor{}, Tensor{}, rm, rv, batch_stats, false); },
                       {x});
    CHECK_MESSAGE(r.ok, r.report);
    CHECK(r.checked == x.numel());
  }
}

TEST_CASE("gradcheck: the whole UNet, every parameter tensor, training and fine-tune mode") {
  PConvUNetConfig config;
  config.levels = 3;
  config.width = 4;
  for (bool finetune : {false, true}) {
    CAPTURE(finetune);
    PConvUNet net(config, 61, DType::F64);
    Generator gen(62);
    Tensor image = Tensor::randn({2, 3, 16, 16}, gen, DType::F64).set_requires_grad(true);
    Tensor m = step(Tensor::rand({2, 1, 16, 16}, gen, DType::F64), 0.4);
    // Non-trivial affine parameters and running statistics (fine-tune normalises with these).
    for (int64_t n = 2; n <= 5; ++n) {
      BatchNorm2d& bn = *net.layer(n).bn();
      const int64_t c = bn.channels();
      bn.load_state_dict({{"weight", Tensor::rand({c}, gen, DType::F64, Device::CPU, 0.5, 1.5)},
                          {"bias", Tensor::randn({c}, gen, DType::F64, Device::CPU, 0, 0.3)},
                          {"running_mean", Tensor::randn({c}, gen, DType::F64, Device::CPU, 0, 0.3)},
                          {"running_var", Tensor::rand({c}, gen, DType::F64, Device::CPU, 0.5, 2)}});
    }
    net.train();
    net.set_finetune(finetune);
    std::vector<Tensor> inputs = {image};
    for (Tensor* p : net.parameters()) inputs.push_back(*p);
    REQUIRE(inputs.size() == 1 + 6 + 2 + 4 * 2);  // image, 6 weights, 2 biases, 4 BNs' γ and β
    GradcheckOptions o;
    o.max_checks_per_input = 6;
    o.rtol = 1e-5;
    o.atol = 1e-7;
    auto r = gradcheck([&](const std::vector<Tensor>&) { return net.forward(image, m); }, inputs, o);
    CHECK_MESSAGE(r.ok, r.report);
    MESSAGE("unet gradcheck (fine-tune " << finetune << "): " << r.report);
    for (const Tensor& t : inputs) CHECK(t.grad().defined());
  }
}
