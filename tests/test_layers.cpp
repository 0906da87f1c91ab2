// Layers against naive loops, BatchNorm2d's modes, f64 gradchecks through each layer, and
// Module: names, counts, freezing, state_dict ⇄ safetensors, strict-load errors, conversions.
#include <doctest/doctest.h>

#include <cmath>

#include "core/io/safetensors.h"
#include "core/ops.h"
#include "layers/activations.h"
#include "layers/batchnorm.h"
#include "layers/concat.h"
#include "layers/conv2d.h"
#include "layers/partial_conv.h"
#include "layers/resample.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"

using namespace pconv;
using testing::gradcheck;
using testing::max_rel_diff;
using testing::rand_leaf;
using Vec = std::vector<double>;

namespace {

// A binary N×1×H×W mask with roughly `hole` of its pixels 0.
Tensor random_mask(int64_t N, int64_t H, int64_t W, uint64_t seed, double hole = 0.4,
                   DType dtype = DType::F64) {
  Generator gen(seed);
  return step(Tensor::rand({N, 1, H, W}, gen, dtype), hole);
}

// The paper's formula, one window at a time: x' = Σ W·X·M · C·k·k / ΣM + b where ΣM > 0.
Vec naive_pconv(const Tensor& x, const Tensor& mask_full, const Tensor& w, const Tensor& b,
                int64_t stride, int64_t pad, Shape& out_shape) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t K = w.size(0), k = w.size(2);
  const int64_t Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
  out_shape = {N, K, Ho, Wo};
  const Vec xv = x.to_double_vector(), mv = mask_full.to_double_vector(), wv = w.to_double_vector();
  const Vec bv = b.defined() ? b.to_double_vector() : Vec(size_t(K), 0.0);
  Vec y(size_t(N * K * Ho * Wo), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < K; ++o)
      for (int64_t oy = 0; oy < Ho; ++oy)
        for (int64_t ox = 0; ox < Wo; ++ox) {
          double acc = 0, count = 0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t ky = 0; ky < k; ++ky)
              for (int64_t kx = 0; kx < k; ++kx) {
                const int64_t iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                const size_t xi = size_t(((n * C + c) * H + iy) * W + ix);
                acc += wv[size_t(((o * C + c) * k + ky) * k + kx)] * xv[xi] * mv[xi];
                count += mv[xi];
              }
          y[size_t(((n * K + o) * Ho + oy) * Wo + ox)] =
              count > 0 ? acc * double(C * k * k) / count + bv[size_t(o)] : 0.0;
        }
  return y;
}

double max_abs_diff(const Vec& a, const Vec& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// Per-channel mean and biased variance of an N×C×H×W tensor.
void channel_stats(const Tensor& x, Vec& mean, Vec& var) {
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  const Vec v = x.to_double_vector();
  mean.assign(size_t(C), 0.0);
  var.assign(size_t(C), 0.0);
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) mean[size_t(c)] += v[size_t((n * C + c) * HW + i)];
    mean[size_t(c)] /= double(N * HW);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const double d = v[size_t((n * C + c) * HW + i)] - mean[size_t(c)];
        var[size_t(c)] += d * d;
      }
    var[size_t(c)] /= double(N * HW);
  }
}

// A small composite: PartialConv2d → BatchNorm2d → LeakyReLU, with a Conv2d head.
struct TinyNet : Module {
  std::shared_ptr<PartialConv2d> pconv;
  std::shared_ptr<BatchNorm2d> bn;
  std::shared_ptr<Conv2d> head;
  explicit TinyNet(uint64_t seed, DType dtype = DType::F64, int64_t width = 4) {
    Generator gen(seed);
    pconv = register_module("pconv", std::make_shared<PartialConv2d>(3, width, 3, 1, true, gen, dtype));
    bn = register_module("bn", std::make_shared<BatchNorm2d>(width, dtype));
    head = register_module("head", std::make_shared<Conv2d>(width, 2, 1, 1, 0, false, gen, dtype));
  }
  Tensor forward(const Tensor& x, const Tensor& m) {
    return head->forward(leaky_relu(bn->forward(pconv->forward(x, {{3, m}}).out), 0.2));
  }
};

}  // namespace

TEST_CASE("PartialConv2d: forward matches the paper's formula, holes are exactly 0 (bias too)") {
  struct Case { int64_t N, C, H, W, K, k, stride; bool bias; };
  for (Case t : {Case{2, 3, 9, 11, 4, 7, 2, true}, Case{1, 5, 8, 8, 3, 5, 2, false},
                 Case{2, 4, 6, 7, 2, 3, 1, true}}) {
    CAPTURE(t.C);
    Generator gen(t.C);
    PartialConv2d layer(t.C, t.K, t.k, t.stride, t.bias, gen, DType::F64);
    CHECK(layer.padding() == t.k / 2);
    CHECK(layer.bias().defined() == t.bias);
    Tensor x = Tensor::randn({t.N, t.C, t.H, t.W}, gen, DType::F64);
    // Two groups: the first C-1 channels share one mask, the last has its own; one image
    // has a large hole so some windows see nothing.
    Tensor m1 = random_mask(t.N, t.H, t.W, 10 + t.C, 0.5), m2 = random_mask(t.N, t.H, t.W, 20 + t.C, 0.3);
    for (int64_t i = 0; i < t.H; ++i)
      for (int64_t j = 0; j < 5 && j < t.W; ++j) m1.set({0, 0, i, j}, 0), m2.set({0, 0, i, j}, 0);
    Mask mask = t.C > 1 ? Mask{{t.C - 1, m1}, {1, m2}} : Mask{{1, m1}};
    PConvResult r = layer.forward(x, mask);
    Shape shape;
    Vec want = naive_pconv(x, mask_expand(mask), layer.weight(), layer.bias(), t.stride, t.k / 2, shape);
    REQUIRE(r.out.shape() == shape);
    CHECK(max_abs_diff(r.out.to_double_vector(), want) < 1e-10);
    REQUIRE(r.mask.size() == 1);
    CHECK(r.mask[0].channels == t.K);
    // Holes: the new mask is 0 exactly where the output is 0 with no valid input.
    Shape s2;
    Tensor ones = Tensor::ones(x.shape(), DType::F64);
    Vec reach = naive_pconv(ones, mask_expand(mask), Tensor::ones({1, t.C, t.k, t.k}, DType::F64),
                            Tensor{}, t.stride, t.k / 2, s2);
    const Vec mv = r.mask[0].mask.to_double_vector(), ov = r.out.to_double_vector();
    int holes = 0;
    for (int64_t n = 0; n < t.N; ++n)
      for (int64_t p = 0; p < shape[2] * shape[3]; ++p) {
        const bool valid = reach[size_t(n * shape[2] * shape[3] + p)] > 0;
        CHECK(mv[size_t(n * shape[2] * shape[3] + p)] == (valid ? 1.0 : 0.0));
        if (!valid) {
          ++holes;
          for (int64_t o = 0; o < t.K; ++o) CHECK(ov[size_t((n * t.K + o) * shape[2] * shape[3] + p)] == 0.0);
        }
      }
    if (t.k <= 5) CHECK(holes > 0);  // the test reached a hole window
  }
}

TEST_CASE("PartialConv2d and Conv2d: f64 gradients through the layer (input, weight, bias)") {
  Generator gen(3);
  PartialConv2d pc(3, 4, 5, 2, true, gen, DType::F64);
  Tensor x = rand_leaf({2, 3, 7, 6}, 11);
  Mask mask{{2, random_mask(2, 7, 6, 12)}, {1, random_mask(2, 7, 6, 13)}};
  auto r = gradcheck([&](const std::vector<Tensor>&) { return pc.forward(x, mask).out; },
                     {x, pc.weight(), pc.bias()});
  CHECK_MESSAGE(r.ok, r.report);

  Conv2d conv(3, 2, 3, 2, 1, true, gen, DType::F64);
  Tensor y = rand_leaf({2, 3, 6, 5}, 14);
  Shape s;
  Vec want = naive_pconv(y, Tensor::ones(y.shape(), DType::F64), conv.weight(), Tensor{}, 2, 1, s);
  // With a full mask the partial conv is a plain conv except at the border ratio; compare
  // only interior outputs of a bias-free plain convolution against naive loops.
  Tensor out = conv2d(y, conv.weight(), Tensor{}, 2, 1);
  const Vec ov = out.to_double_vector();
  CHECK(out.shape() == s);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t o = 0; o < 2; ++o)
      for (int64_t i = 1; i < s[2] - 1; ++i)
        for (int64_t j = 1; j < s[3] - 1; ++j) {
          const size_t idx = size_t(((n * 2 + o) * s[2] + i) * s[3] + j);
          CHECK(ov[idx] == doctest::Approx(want[idx]).epsilon(1e-12));
        }
  Tensor with_bias = conv.forward(y);
  CHECK(max_rel_diff(with_bias, add(out, conv.bias().reshape({1, 2, 1, 1}))) < 1e-12);
  auto rc = gradcheck([&](const std::vector<Tensor>&) { return conv.forward(y); },
                      {y, conv.weight(), conv.bias()});
  CHECK_MESSAGE(rc.ok, rc.report);
}

TEST_CASE("BatchNorm2d: training normalises with batch statistics and updates the running ones") {
  BatchNorm2d bn(3, DType::F64);
  CHECK(bn.momentum() == 0.1);
  CHECK(bn.eps() == 1e-5);
  Generator gen(5);
  Tensor x = Tensor::randn({2, 3, 4, 5}, gen, DType::F64, Device::CPU, 1.5, 2.0);
  Tensor gamma = Tensor::rand({3}, gen, DType::F64, Device::CPU, 0.5, 1.5);
  Tensor beta = Tensor::randn({3}, gen, DType::F64);
  bn.load_state_dict({{"weight", gamma}, {"bias", beta}}, false);
  Vec mean, var;
  channel_stats(x, mean, var);
  Tensor y = bn.forward(x);
  const Vec xv = x.to_double_vector(), yv = y.to_double_vector();
  const Vec gv = gamma.to_double_vector(), bv = beta.to_double_vector();
  for (size_t i = 0; i < xv.size(); ++i) {
    const size_t c = (i / 20) % 3;
    CHECK(yv[i] == doctest::Approx((xv[i] - mean[c]) / std::sqrt(var[c] + 1e-5) * gv[c] + bv[c]).epsilon(1e-12));
  }
  const Vec rm = bn.running_mean().to_double_vector(), rv = bn.running_var().to_double_vector();
  for (size_t c = 0; c < 3; ++c) {
    CHECK(rm[c] == doctest::Approx(0.1 * mean[c]).epsilon(1e-12));
    CHECK(rv[c] == doctest::Approx(0.9 + 0.1 * var[c] * 40.0 / 39.0).epsilon(1e-12));  // unbiased, n = 40
  }
}

TEST_CASE("BatchNorm2d: eval, freeze and running-stats mode use and keep the running statistics") {
  Generator gen(6);
  Tensor x = Tensor::randn({2, 2, 3, 3}, gen, DType::F64, Device::CPU, 0.5, 1.0);
  Tensor rm = Tensor::from_vector(Vec{0.3, -0.2}, {2}), rv = Tensor::from_vector(Vec{1.7, 0.4}, {2});
  const Vec xv = x.to_double_vector();
  auto expect_running = [&](BatchNorm2d& bn, const char* mode) {
    CAPTURE(mode);
    CHECK_FALSE(bn.uses_batch_stats());
    Tensor y = bn.forward(x);
    const Vec yv = y.to_double_vector();
    const Vec rmv = rm.to_double_vector(), rvv = rv.to_double_vector();
    for (size_t i = 0; i < xv.size(); ++i) {
      const size_t c = (i / 9) % 2;
      CHECK(yv[i] == doctest::Approx((xv[i] - rmv[c]) / std::sqrt(rvv[c] + 1e-5)).epsilon(1e-12));
    }
    CHECK(bn.running_mean().to_double_vector() == rmv);
    CHECK(bn.running_var().to_double_vector() == rvv);
  };
  {
    BatchNorm2d bn(2, DType::F64);
    bn.load_state_dict({{"running_mean", rm}, {"running_var", rv}}, false);
    bn.eval();
    expect_running(bn, "eval");
  }
  {
    BatchNorm2d bn(2, DType::F64);
    bn.load_state_dict({{"running_mean", rm}, {"running_var", rv}}, false);
    bn.freeze();
    CHECK(bn.is_training());
    CHECK(bn.trainable_parameters().empty());
    expect_running(bn, "frozen");
  }
  {
    BatchNorm2d bn(2, DType::F64);
    bn.load_state_dict({{"running_mean", rm}, {"running_var", rv}}, false);
    bn.set_use_running_stats(true);
    CHECK(bn.trainable_parameters().size() == 2);  // γ and β keep training (fine-tune phase)
    expect_running(bn, "running stats");
    bn.set_use_running_stats(false);
    CHECK(bn.uses_batch_stats());
  }
}

TEST_CASE("BatchNorm2d: f64 gradients in training and evaluation modes") {
  for (bool training : {true, false}) {
    CAPTURE(training);
    BatchNorm2d bn(3, DType::F64);
    Generator gen(7);
    bn.load_state_dict({{"weight", Tensor::rand({3}, gen, DType::F64, Device::CPU, 0.5, 1.5)},
                        {"bias", Tensor::randn({3}, gen, DType::F64)},
                        {"running_mean", Tensor::randn({3}, gen, DType::F64)},
                        {"running_var", Tensor::rand({3}, gen, DType::F64, Device::CPU, 0.5, 2)}});
    bn.train(training);
    Tensor x = rand_leaf({2, 3, 3, 4}, 8);
    auto r = gradcheck([&](const std::vector<Tensor>&) { return bn.forward(x); },
                       {x, bn.weight(), bn.bias()});
    CHECK_MESSAGE(r.ok, r.report);
  }
}

TEST_CASE("activations, Upsample, MaxPool2d, Concat: forward against naive loops and f64 gradients") {
  Tensor x = rand_leaf({2, 3, 4, 6}, 9);
  const Vec xv = x.to_double_vector();
  const Vec rv = ReLU().forward(x).to_double_vector(), lv = LeakyReLU().forward(x).to_double_vector();
  for (size_t i = 0; i < xv.size(); ++i) {
    CHECK(rv[i] == std::max(xv[i], 0.0));
    CHECK(lv[i] == doctest::Approx(xv[i] > 0 ? xv[i] : 0.2 * xv[i]).epsilon(1e-15));
  }
  Upsample up;
  const Vec uv = up.forward(x).to_double_vector();
  for (int64_t p = 0; p < 2 * 3; ++p)
    for (int64_t i = 0; i < 8; ++i)
      for (int64_t j = 0; j < 12; ++j) CHECK(uv[size_t((p * 8 + i) * 12 + j)] == xv[size_t((p * 4 + i / 2) * 6 + j / 2)]);
  MaxPool2d pool;
  const Vec pv = pool.forward(x).to_double_vector();
  for (int64_t p = 0; p < 2 * 3; ++p)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 3; ++j) {
        double m = -1e300;
        for (int64_t a = 0; a < 2; ++a)
          for (int64_t b = 0; b < 2; ++b) m = std::max(m, xv[size_t((p * 4 + 2 * i + a) * 6 + 2 * j + b)]);
        CHECK(pv[size_t((p * 2 + i) * 3 + j)] == m);
      }
  Tensor skip = rand_leaf({2, 2, 4, 6}, 10);
  Concat cat;
  Tensor c = cat.forward(x, skip);
  REQUIRE(c.shape() == Shape{2, 5, 4, 6});
  CHECK(c.at({1, 2, 3, 5}) == x.at({1, 2, 3, 5}));  // [upsampled, skip] order
  CHECK(c.at({1, 3, 2, 1}) == skip.at({1, 0, 2, 1}));
  Mask mu = up.forward(Mask{{3, random_mask(2, 2, 3, 1)}});
  REQUIRE(mu[0].mask.shape() == Shape{2, 1, 4, 6});
  Mask mc = cat.forward(mu, Mask{{2, random_mask(2, 4, 6, 2)}});
  REQUIRE(mc.size() == 2);
  CHECK((mc[0].channels == 3 && mc[1].channels == 2));
  CHECK(mc[0].mask.same(mu[0].mask));

  for (auto& [name, f] : std::vector<std::pair<const char*, testing::GradFn>>{
           {"relu", [&](const std::vector<Tensor>&) { return ReLU().forward(x); }},
           {"leaky", [&](const std::vector<Tensor>&) { return LeakyReLU().forward(x); }},
           {"upsample", [&](const std::vector<Tensor>&) { return up.forward(x); }},
           {"maxpool", [&](const std::vector<Tensor>&) { return pool.forward(x); }},
           {"concat", [&](const std::vector<Tensor>&) { return cat.forward(x, skip); }}}) {
    const std::string layer = name;
    CAPTURE(layer);
    auto r = gradcheck(f, {x, skip});
    CHECK_MESSAGE(r.ok, r.report);
  }
}

TEST_CASE("Module: names in registration order, counts, freezing, train/eval recursion") {
  TinyNet net(1);
  std::vector<std::string> names;
  for (auto& [n, t] : net.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"pconv.weight", "pconv.bias", "bn.weight", "bn.bias", "head.weight"});
  std::vector<std::string> buffers;
  for (auto& [n, t] : net.named_buffers()) buffers.push_back(n);
  CHECK(buffers == std::vector<std::string>{"bn.running_mean", "bn.running_var"});
  CHECK(net.parameter_count() == 4 * 3 * 9 + 4 + 4 + 4 + 2 * 4);
  CHECK(net.named_modules().size() == 4);
  CHECK(net.state_dict().size() == 7);
  net.eval();
  CHECK_FALSE(net.bn->is_training());
  net.train();
  CHECK(net.bn->is_training());
  net.head->freeze();
  CHECK(net.trainable_parameters().size() == 4);
  net.freeze();
  CHECK(net.trainable_parameters().empty());
  net.freeze(false);
  CHECK(net.trainable_parameters().size() == 5);
  CHECK(net.bn->uses_batch_stats());
}

TEST_CASE("Module: state_dict round trip through safetensors gives identical outputs") {
  TinyNet a(1), b(2);
  Generator gen(3);
  Tensor x = Tensor::randn({2, 3, 5, 6}, gen, DType::F64), m = random_mask(2, 5, 6, 4);
  a.forward(x, m);  // move a's running statistics away from their initial values
  a.eval();
  b.eval();
  const std::string path = testing::scratch_dir("layers_module") + "/tiny.safetensors";
  a.save(path, {{"note", "test"}});
  CHECK(max_rel_diff(a.forward(x, m), b.forward(x, m)) > 1e-3);  // different seeds differ
  b.load(path);
  CHECK(a.forward(x, m).to_double_vector() == b.forward(x, m).to_double_vector());
  CHECK(load_safetensors(path).metadata.at("note") == "test");

  // An f32 file loads into an f64 model (converted), and to(dtype) converts the live module.
  TinyNet c(5, DType::F32);
  c.save(path);
  TinyNet d(6, DType::F64);
  d.load(path);
  CHECK(d.pconv->weight().dtype() == DType::F64);
  CHECK(max_rel_diff(d.pconv->weight(), c.pconv->weight().to(DType::F64)) == 0);
  c.to(DType::F64);
  CHECK(c.pconv->weight().dtype() == DType::F64);
  CHECK(c.pconv->weight().requires_grad());
  CHECK(c.bn->running_var().dtype() == DType::F64);
  c.eval();
  d.eval();
  CHECK(c.forward(x, m).to_double_vector() == d.forward(x, m).to_double_vector());
}

TEST_CASE("Module: strict loading names the missing, unexpected or mis-shaped tensor") {
  TinyNet a(1), wide(2, DType::F64, 5);
  auto state = a.state_dict();
  auto missing = state;
  missing.erase("bn.running_var");
  CHECK_THROWS_WITH_AS(a.load_state_dict(missing), "load_state_dict: missing bn.running_var", Error);
  auto extra = state;
  extra["bn.num_batches_tracked"] = Tensor::zeros({1});
  CHECK_THROWS_WITH_AS(a.load_state_dict(extra), "load_state_dict: unexpected key bn.num_batches_tracked", Error);
  CHECK_THROWS_WITH_AS(a.load_state_dict(wide.state_dict()),
                       "load_state_dict: pconv.weight has shape [5, 3, 3, 3] in the file, the model expects [4, 3, 3, 3]", Error);
  // Non-strict loading skips missing and unknown names but still rejects a wrong shape.
  TinyNet b(3);
  b.load_state_dict({{"bn.running_var", Tensor::full({4}, 2.0, DType::F64)}}, false);
  missing["extra"] = Tensor::zeros({2});
  b.load_state_dict(missing, false);
  CHECK(b.pconv->weight().to_double_vector() == a.pconv->weight().to_double_vector());
  CHECK(b.bn->running_var().to_double_vector() == Vec(4, 2.0));
  CHECK_THROWS_WITH_AS(b.load_state_dict({{"head.weight", Tensor::zeros({2, 4, 3, 3})}}, false),
                       "load_state_dict: head.weight has shape [2, 4, 3, 3] in the file, the model "
                       "expects [2, 4, 1, 1]", Error);
}
