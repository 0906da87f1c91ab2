// Spectral normalisation (layers/spectral_norm.h), the PatchGAN discriminator
// (models/patch_discriminator.h) and the adversarial and feature-matching losses
// (losses/adversarial.h): forward values computed another way, f64 gradient checks.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "layers/spectral_norm.h"
#include "losses/adversarial.h"
#include "models/patch_discriminator.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"

using namespace pconv;

namespace {

// Largest singular value of a K×R row-major matrix: √(largest eigenvalue of AᵀA) by 2,000
// plain power iterations in double, independent of the layer's code.
double largest_singular_value(const std::vector<double>& a, int64_t k, int64_t r) {
  std::vector<double> x(static_cast<size_t>(r), 1.0), ax(static_cast<size_t>(k)), y(static_cast<size_t>(r));
  double lambda = 0;
  for (int it = 0; it < 2000; ++it) {
    for (int64_t i = 0; i < k; ++i) {
      double s = 0;
      for (int64_t j = 0; j < r; ++j) s += a[size_t(i * r + j)] * x[size_t(j)];
      ax[size_t(i)] = s;
    }
    for (int64_t j = 0; j < r; ++j) {
      double s = 0;
      for (int64_t i = 0; i < k; ++i) s += a[size_t(i * r + j)] * ax[size_t(i)];
      y[size_t(j)] = s;
    }
    double norm = 0;
    for (double v : y) norm += v * v;
    norm = std::sqrt(norm);
    lambda = norm;
    for (int64_t j = 0; j < r; ++j) x[size_t(j)] = y[size_t(j)] / norm;
  }
  return std::sqrt(lambda);
}

Tensor constant(const Shape& shape, uint64_t seed) {
  Generator g(seed);
  return Tensor::randn(shape, g, DType::F64);
}

// The first and last column where a 1×3×H×W image gradient is non-zero: the horizontal extent
// of what one score depends on.
std::pair<int64_t, int64_t> support_columns(const Tensor& g) {
  const int64_t height = g.size(2), width = g.size(3);
  int64_t lo = width, hi = -1;
  for (int64_t x = 0; x < width; ++x) {
    bool any = false;
    for (int64_t y = 0; y < height && !any; ++y)
      for (int64_t ch = 0; ch < 3 && !any; ++ch) any = g.at({0, ch, y, x}) != 0;
    if (any) lo = std::min(lo, x), hi = std::max(hi, x);
  }
  return {lo, hi};
}

}  // namespace

TEST_CASE("spectral norm: sigma converges to the largest singular value; W/sigma has norm 1") {
  const Tensor w = constant({5, 3, 2, 2}, 11);
  Tensor u = constant({5}, 12), v = constant({12}, 13);
  for (int i = 0; i < 200; ++i) power_iteration(w, u, v);
  const double expected = largest_singular_value(w.to_double_vector(), 5, 12);
  CHECK(spectral_sigma(w, u, v).item() == doctest::Approx(expected).epsilon(1e-9));
  const Tensor wn = spectral_normalize(w, u, v);
  CHECK(largest_singular_value(wn.to_double_vector(), 5, 12) == doctest::Approx(1.0).epsilon(1e-9));
  // u and v are unit vectors.
  CHECK(sum(square(u)).item() == doctest::Approx(1.0));
  CHECK(sum(square(v)).item() == doctest::Approx(1.0));

  // A diagonal matrix by hand: σ = 3 whatever the (non-orthogonal) start.
  const Tensor d = Tensor::from_vector(std::vector<double>{3, 0, 0, 1}, {2, 2});
  Tensor du = Tensor::from_vector(std::vector<double>{0.6, 0.8}, {2});
  Tensor dv = Tensor::from_vector(std::vector<double>{0.8, 0.6}, {2});
  for (int i = 0; i < 60; ++i) power_iteration(d, du, dv);
  CHECK(spectral_sigma(d, du, dv).item() == doctest::Approx(3.0).epsilon(1e-12));
}

TEST_CASE("spectral norm: one power iteration is PyTorch's (v = Wᵀu/|Wᵀu|, u = Wv/|Wv|)") {
  // W = [[1, 2], [3, 4]], u = [1, 0]: Wᵀu = [1, 2] → v = [1, 2]/√5; Wv = [5, 11]/√5 → u = [5, 11]/√146.
  const Tensor w = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2});
  Tensor u = Tensor::from_vector(std::vector<double>{1, 0}, {2});
  Tensor v = Tensor::from_vector(std::vector<double>{0, 0}, {2});
  power_iteration(w, u, v);
  CHECK(v.at({0}) == doctest::Approx(1 / std::sqrt(5.0)));
  CHECK(v.at({1}) == doctest::Approx(2 / std::sqrt(5.0)));
  CHECK(u.at({0}) == doctest::Approx(5 / std::sqrt(146.0)));
  CHECK(u.at({1}) == doctest::Approx(11 / std::sqrt(146.0)));
  // σ = uᵀWv = (5·5 + 11·11)/√(146·5) = √(146/5)
  CHECK(spectral_sigma(w, u, v).item() == doctest::Approx(std::sqrt(146.0 / 5.0)));
}

TEST_CASE("spectral norm: gradient of W/σ(W) in f64 (u, v constant), alone and inside a convolution") {
  const Tensor w = testing::rand_leaf({4, 3, 2, 2}, 21);
  Tensor u = constant({4}, 22), v = constant({12}, 23);
  for (int i = 0; i < 5; ++i) power_iteration(w, u, v);
  auto r = testing::gradcheck([&](const std::vector<Tensor>& in) { return spectral_normalize(in[0], u, v); }, {w});
  INFO(r.report);
  CHECK(r.ok);

  const Tensor x = testing::rand_leaf({2, 3, 6, 6}, 24);
  const Tensor b = testing::rand_leaf({4}, 25);
  auto rc = testing::gradcheck(
      [&](const std::vector<Tensor>& in) { return conv2d(in[0], spectral_normalize(in[1], u, v), in[2], 2, 1); },
      {x, w, b});
  INFO(rc.report);
  CHECK(rc.ok);
  // u and v receive no gradient: they are buffers moved only by power_iteration.
  CHECK_FALSE(u.requires_grad());
}

TEST_CASE("SNConv2d: weight, bias and the u, v buffers are in the state dict; forward is conv with W/σ") {
  Generator g(3);
  SNConv2d conv(2, 5, 4, 2, 1, g, DType::F64);
  const auto state = conv.state_dict();
  CHECK(state.count("weight") == 1);
  CHECK(state.count("bias") == 1);
  CHECK(state.at("weight_u").shape() == Shape{5});
  CHECK(state.at("weight_v").shape() == Shape{32});
  CHECK(conv.parameter_count() == 5 * 2 * 16 + 5);
  const Tensor x = constant({1, 2, 8, 8}, 4);
  const Tensor expected = conv2d(x, conv.weight() / spectral_sigma(conv.weight(), conv.u(), conv.v()),
                                 conv.state_dict().at("bias"), 2, 1);
  CHECK(testing::max_rel_diff(conv.forward(x), expected) < 1e-14);
  // After construction's power iterations σ is near the true largest singular value.
  const double truth = largest_singular_value(conv.weight().to_double_vector(), 5, 32);
  CHECK(spectral_sigma(conv.weight(), conv.u(), conv.v()).item() == doctest::Approx(truth).epsilon(0.05));
  const Tensor u0 = conv.u().clone();
  conv.power_iterate();
  CHECK(testing::max_rel_diff(conv.u(), u0) > 0);  // it moves
}

TEST_CASE("adversarial losses: values by hand") {
  const Tensor real = Tensor::from_vector(std::vector<double>{2.0, 0.5, -1.0, 0.0}, {1, 1, 2, 2});
  const Tensor fake = Tensor::from_vector(std::vector<double>{-2.0, -0.5, 1.0, 0.0}, {1, 1, 2, 2});
  // hinge: mean(relu(1 − real)) = (0 + 0.5 + 2 + 1)/4; mean(relu(1 + fake)) = (0 + 0.5 + 2 + 1)/4
  CHECK(discriminator_loss(real, fake, GanLoss::Hinge).item() == doctest::Approx(3.5 / 4 * 2));
  CHECK(generator_adversarial_loss(fake, GanLoss::Hinge).item() == doctest::Approx(-(-2.0 - 0.5 + 1.0) / 4));
  auto sp = [](double x) { return std::log1p(std::exp(x)); };
  double d = 0, gl = 0;
  for (double r : {2.0, 0.5, -1.0, 0.0}) d += sp(-r) / 4;
  for (double f : {-2.0, -0.5, 1.0, 0.0}) d += sp(f) / 4, gl += sp(-f) / 4;
  CHECK(discriminator_loss(real, fake, GanLoss::NonSaturating).item() == doctest::Approx(d));
  CHECK(generator_adversarial_loss(fake, GanLoss::NonSaturating).item() == doctest::Approx(gl));

  // softplus: exact where log1p(exp) is, finite where it overflows.
  const Tensor x = Tensor::from_vector(std::vector<double>{-800, -30, -1, 0, 1, 30, 800}, {7});
  const auto y = softplus(x).to_double_vector();
  CHECK(y[0] == doctest::Approx(0.0));
  CHECK(y[1] == doctest::Approx(std::log1p(std::exp(-30.0))).epsilon(1e-12));
  CHECK(y[2] == doctest::Approx(sp(-1)));
  CHECK(y[3] == doctest::Approx(std::log(2.0)));
  CHECK(y[4] == doctest::Approx(sp(1)));
  CHECK(y[5] == doctest::Approx(30 + std::log1p(std::exp(-30.0))));
  CHECK(y[6] == doctest::Approx(800.0));

  CHECK(parse_gan_loss("hinge") == GanLoss::Hinge);
  CHECK(parse_gan_loss("nonsaturating") == GanLoss::NonSaturating);
  CHECK_THROWS_AS(parse_gan_loss("wgan"), Error);
}

TEST_CASE("adversarial losses: f64 gradients of both kinds, softplus and feature matching") {
  const Tensor real = testing::rand_leaf({2, 1, 3, 3}, 31, -2, 2);
  const Tensor fake = testing::rand_leaf({2, 1, 3, 3}, 32, -2, 2);
  for (GanLoss kind : {GanLoss::Hinge, GanLoss::NonSaturating}) {
    INFO(gan_loss_name(kind));
    auto rd = testing::gradcheck(
        [&](const std::vector<Tensor>& in) { return discriminator_loss(in[0], in[1], kind); }, {real, fake});
    INFO(rd.report);
    CHECK(rd.ok);
    auto rg = testing::gradcheck(
        [&](const std::vector<Tensor>& in) { return generator_adversarial_loss(in[0], kind); }, {fake});
    INFO(rg.report);
    CHECK(rg.ok);
  }
  const Tensor x = testing::rand_leaf({10}, 33, -20, 20);
  auto rs = testing::gradcheck([](const std::vector<Tensor>& in) { return softplus(in[0]); }, {x});
  INFO(rs.report);
  CHECK(rs.ok);

  const Tensor f1 = testing::rand_leaf({2, 3, 4, 4}, 34), f2 = testing::rand_leaf({2, 5, 2, 2}, 35);
  const Tensor r1 = constant({2, 3, 4, 4}, 36), r2 = constant({2, 5, 2, 2}, 37);
  // value: mean over layers of mean |fake − real|
  std::vector<double> a1 = f1.to_double_vector(), b1 = r1.to_double_vector(), a2 = f2.to_double_vector(),
                      b2 = r2.to_double_vector();
  double m1 = 0, m2 = 0;
  for (size_t i = 0; i < a1.size(); ++i) m1 += std::abs(a1[i] - b1[i]) / double(a1.size());
  for (size_t i = 0; i < a2.size(); ++i) m2 += std::abs(a2[i] - b2[i]) / double(a2.size());
  CHECK(feature_matching_loss({f1, f2}, {r1, r2}).item() == doctest::Approx((m1 + m2) / 2));
  auto rf = testing::gradcheck(
      [&](const std::vector<Tensor>& in) { return feature_matching_loss({in[0], in[1]}, {r1, r2}); }, {f1, f2});
  INFO(rf.report);
  CHECK(rf.ok);
  // The real features are held constant even when they require grad.
  const Tensor r1g = testing::rand_leaf({2, 3, 4, 4}, 38);
  feature_matching_loss({f1}, {r1g}).backward();
  CHECK_FALSE(r1g.grad().defined());
  CHECK_THROWS_AS(feature_matching_loss({f1}, {r2}), Error);
  CHECK_THROWS_AS(feature_matching_loss({}, {}), Error);
}

TEST_CASE("PatchDiscriminator: shapes, names, and each score sees a 70×70 patch at 3 layers") {
  PatchDiscriminatorConfig c;
  c.width = 4, c.layers = 3;
  PatchDiscriminator d(c, 5, DType::F64);
  CHECK(c.receptive_field() == 70);
  const auto state = d.state_dict();
  for (const char* name : {"d1.weight", "d1.weight_u", "d4.bias", "score.weight", "score.weight_v"})
    CHECK(state.count(name) == 1);
  CHECK(state.at("d1.weight").shape() == Shape{4, 4, 4, 4});
  CHECK(state.at("d4.weight").shape() == Shape{32, 16, 4, 4});
  CHECK(state.at("score.weight").shape() == Shape{1, 32, 4, 4});

  const Tensor img = testing::rand_leaf({1, 3, 128, 128}, 41);
  const Tensor mask = Tensor::ones({1, 1, 128, 128}, DType::F64);
  const DiscriminatorOutput out = d.forward(img, mask);
  CHECK(out.scores.shape() == Shape{1, 1, 14, 14});  // 128/8 = 16, two 4×4 stride-1 layers: 14
  REQUIRE(out.features.size() == 4);
  CHECK(out.features[0].shape() == Shape{1, 4, 64, 64});
  CHECK(out.features[3].shape() == Shape{1, 32, 15, 15});

  // The pixels one interior score depends on: the support of its gradient is 70 wide.
  const int64_t sy = 7, sx = 7;
  Tensor pick = Tensor::zeros(out.scores.shape(), DType::F64);
  pick.set({0, 0, sy, sx}, 1.0);
  sum(out.scores * pick).backward();
  const auto [lo, hi] = support_columns(img.grad());
  CHECK(hi - lo + 1 == 70);

  CHECK_THROWS_AS(d.forward(constant({1, 3, 16, 16}, 1), Tensor::ones({1, 1, 16, 16}, DType::F64)), Error);
  CHECK_THROWS_AS(d.forward(constant({1, 4, 64, 64}, 1), Tensor::ones({1, 1, 64, 64}, DType::F64)), Error);
}

TEST_CASE("PatchDiscriminator: config JSON round trip and one-line refusals") {
  PatchDiscriminatorConfig c;
  c.width = 48, c.layers = 4;
  CHECK(PatchDiscriminatorConfig::from_json(c.to_json()) == c);
  CHECK_THROWS_AS(PatchDiscriminatorConfig::from_json("{\"in_channels\":4,\"layers\":99,\"width\":8}"), Error);
  CHECK_THROWS_AS(PatchDiscriminatorConfig::from_json("{\"in_channels\":4,\"width\":8}"), Error);
  CHECK_THROWS_AS(PatchDiscriminatorConfig::from_json("[1]"), Error);
  c.width = 0;
  CHECK_THROWS_AS(c.validate(), Error);
}

TEST_CASE("PatchDiscriminator: f64 gradients through the whole discriminator to the image and its weights") {
  PatchDiscriminatorConfig c;
  c.width = 2, c.layers = 1;
  PatchDiscriminator d(c, 9, DType::F64);
  const Tensor img = testing::rand_leaf({2, 3, 10, 10}, 51);
  Generator g(52);
  const Tensor mask = step(Tensor::rand({2, 1, 10, 10}, g, DType::F64), 0.3);
  const Tensor real = constant({2, 3, 10, 10}, 53);
  const DiscriminatorOutput r = [&] {
    NoGradGuard ng;
    return d.forward(real, mask);
  }();
  // The generator's view: adversarial + feature matching, as the trainer adds them.
  for (GanLoss kind : {GanLoss::Hinge, GanLoss::NonSaturating}) {
    auto rg = testing::gradcheck(
        [&](const std::vector<Tensor>& in) {
          const DiscriminatorOutput f = d.forward(in[0], mask);
          return generator_adversarial_loss(f.scores, kind) + feature_matching_loss(f.features, r.features) * 3.0;
        },
        {img});
    INFO(rg.report);
    CHECK(rg.ok);
  }
  // The discriminator's view: its loss in every one of its weights, by central differences
  // on the live parameters (sampled elements), against one backward.
  const Tensor fake = constant({2, 3, 10, 10}, 54);
  for (GanLoss kind : {GanLoss::Hinge, GanLoss::NonSaturating}) {
    INFO(gan_loss_name(kind));
    auto loss = [&] { return discriminator_loss(d.forward(real, mask).scores, d.forward(fake, mask).scores, kind); };
    d.zero_grad();
    loss().backward();
    int64_t checked = 0;
    for (auto& [name, p] : d.named_parameters()) {
      const std::string param = name;
      INFO(param);
      const Tensor grad = p->grad();
      REQUIRE(grad.defined());
      for (int64_t i = 0; i < p->numel(); i += std::max<int64_t>(1, p->numel() / 7)) {
        double* value = p->data<double>() + i;
        const double saved = *value, eps = 1e-6;
        double up, down;
        {
          NoGradGuard ng;
          *value = saved + eps, up = loss().item();
          *value = saved - eps, down = loss().item();
        }
        *value = saved;
        const double numeric = (up - down) / (2 * eps), analytic = grad.to_double_vector()[size_t(i)];
        CHECK(std::abs(analytic - numeric) <= 1e-7 + 1e-5 * std::max(std::abs(analytic), std::abs(numeric)));
        ++checked;
      }
    }
    CHECK(checked > 30);
  }
}

TEST_CASE("discriminator loss with a fake target: values by hand, f64 gradients, all-fake equals no target") {
  const Tensor real = Tensor::from_vector(std::vector<double>{2.0, 0.5, -1.0, 0.0}, {1, 1, 2, 2});
  const Tensor fake = Tensor::from_vector(std::vector<double>{-2.0, -0.5, 1.0, 0.0}, {1, 1, 2, 2});
  const Tensor target = Tensor::from_vector(std::vector<double>{1.0, 0.0, 0.25, 1.0}, {1, 1, 2, 2});
  // hinge: the real term as before (3.5/4); fake scores: 1·relu(1 − 2) , 0·… + 1·relu(1 + 0.5),
  // 0.25·relu(1 + 1) + 0.75·relu(1 − 1), 1·relu(1 + 0)
  CHECK(discriminator_loss(real, fake, GanLoss::Hinge, target).item() ==
        doctest::Approx(3.5 / 4 + (0.0 + 1.5 + 0.5 + 1.0) / 4));
  auto sp = [](double x) { return std::log1p(std::exp(x)); };
  double d = 0;
  for (double r : {2.0, 0.5, -1.0, 0.0}) d += sp(-r) / 4;
  const double f[] = {-2.0, -0.5, 1.0, 0.0}, t[] = {1.0, 0.0, 0.25, 1.0};
  for (int i = 0; i < 4; ++i) d += (t[i] * sp(f[i]) + (1 - t[i]) * sp(-f[i])) / 4;
  CHECK(discriminator_loss(real, fake, GanLoss::NonSaturating, target).item() == doctest::Approx(d));
  for (GanLoss kind : {GanLoss::Hinge, GanLoss::NonSaturating})
    CHECK(discriminator_loss(real, fake, kind, Tensor::ones({1, 1, 2, 2}, DType::F64)).item() ==
          doctest::Approx(discriminator_loss(real, fake, kind).item()));
  CHECK_THROWS_AS(discriminator_loss(real, fake, GanLoss::Hinge, Tensor::ones({1, 1, 4}, DType::F64)), Error);

  const Tensor rl = testing::rand_leaf({2, 1, 3, 3}, 61, -2, 2), fl = testing::rand_leaf({2, 1, 3, 3}, 62, -2, 2);
  Generator g(63);
  const Tensor tt = Tensor::rand({2, 1, 3, 3}, g, DType::F64);
  for (GanLoss kind : {GanLoss::Hinge, GanLoss::NonSaturating}) {
    INFO(gan_loss_name(kind));
    auto r = testing::gradcheck(
        [&](const std::vector<Tensor>& in) { return discriminator_loss(in[0], in[1], kind, tt); }, {rl, fl});
    INFO(r.report);
    CHECK(r.ok);
  }
}

TEST_CASE("PatchDiscriminator without the mask channel: ignores the mask; hole_fraction sits under each score") {
  PatchDiscriminatorConfig c;
  c.in_channels = 3, c.width = 4, c.layers = 3;
  PatchDiscriminator d(c, 5, DType::F64);
  const Tensor img = testing::rand_leaf({1, 3, 128, 128}, 71);
  Generator g(72);
  const Tensor m1 = step(Tensor::rand({1, 1, 128, 128}, g, DType::F64), 0.5);
  const Tensor m2 = Tensor::ones({1, 1, 128, 128}, DType::F64);
  const DiscriminatorOutput out = d.forward(img, m1);
  CHECK(out.scores.shape() == Shape{1, 1, 14, 14});
  CHECK(out.scores.to_double_vector() == d.forward(img, m2).scores.to_double_vector());
  CHECK_THROWS_AS(d.forward(constant({1, 4, 128, 128}, 1), m2), Error);  // 4 channels into 3

  // hole_fraction by hand: a hole of rows 40..55 × columns 24..31 (mask 0). Score (i, j) reads the
  // 8×8 block at rows 8(i+1).., columns 8(j+1)..: rows 40..47 and 48..55 are i = 4 and 5,
  // columns 24..31 is j = 2; a half-covered block reads 0.5.
  std::vector<double> known(128 * 128, 1.0);
  for (int y = 40; y < 56; ++y)
    for (int x = 24; x < 32; ++x) known[size_t(y * 128 + x)] = 0.0;
  for (int y = 60; y < 64; ++y)
    for (int x = 80; x < 88; ++x) known[size_t(y * 128 + x)] = 0.0;  // rows 56..63 (i = 6) half, j = 9
  const Tensor mask = Tensor::from_vector(known, {1, 1, 128, 128});
  const Tensor t = d.hole_fraction(mask, out.scores.shape(), DType::F32);
  CHECK(t.dtype() == DType::F32);
  double total = 0;
  for (int64_t i = 0; i < 14; ++i)
    for (int64_t j = 0; j < 14; ++j) {
      const double v = t.at({0, 0, i, j});
      total += v;
      if ((i == 4 || i == 5) && j == 2) CHECK(v == 1.0);
      if (i == 6 && j == 9) CHECK(v == 0.5);
    }
  CHECK(total == 2.5);

  // The block is the centre of the score's receptive field: the gradient support of score
  // (7, 7) is symmetric about its block, columns 64..71.
  Tensor pick = Tensor::zeros(out.scores.shape(), DType::F64);
  pick.set({0, 0, 7, 7}, 1.0);
  sum(out.scores * pick).backward();
  const auto [lo, hi] = support_columns(img.grad());
  CHECK(lo + hi == 64 + 71);  // the support's centre is the block's centre
  CHECK_THROWS_AS(d.hole_fraction(mask, Shape{2, 1, 14, 14}, DType::F32), Error);
}
