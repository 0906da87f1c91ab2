#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "core/ops.h"
#include "losses/inpainting_loss.h"
#include "models/vgg16.h"
#include "tests/gradcheck.h"

using namespace pconv;

namespace {

// A random binary mask (1 = known) with roughly `hole_fraction` holes.
Tensor random_mask(const Shape& shape, uint64_t seed, double hole_fraction) {
  Generator gen(seed);
  auto u = Tensor::rand(shape, gen, DType::F64).to_double_vector();
  for (double& v : u) v = v < hole_fraction ? 0.0 : 1.0;
  return Tensor::from_vector(u, shape);
}

// Naive references, written from PAPER.md with plain loops over NCHW.
struct Naive {
  const Tensor &out, &gt, &mask;
  int64_t n = out.size(0), c = out.size(1), h = out.size(2), w = out.size(3), mc = mask.size(1);
  std::vector<double> o = out.to_double_vector(), g = gt.to_double_vector(),
                      m = mask.to_double_vector();
  double img(const std::vector<double>& v, int64_t i, int64_t ch, int64_t y, int64_t x) const {
    return v[size_t(((i * c + ch) * h + y) * w + x)];
  }
  double known(int64_t i, int64_t ch, int64_t y, int64_t x) const {
    return m[size_t(((i * mc + (mc == 1 ? 0 : ch)) * h + y) * w + x)];
  }
  double comp(int64_t i, int64_t ch, int64_t y, int64_t x) const {
    const double k = known(i, ch, y, x);
    return k * img(g, i, ch, y, x) + (1 - k) * img(o, i, ch, y, x);
  }
  bool in_p(int64_t i, int64_t ch, int64_t y, int64_t x) const {  // a hole within 1 pixel
    for (int64_t yy = std::max<int64_t>(0, y - 1); yy <= std::min(h - 1, y + 1); ++yy)
      for (int64_t xx = std::max<int64_t>(0, x - 1); xx <= std::min(w - 1, x + 1); ++xx)
        if (known(i, ch, yy, xx) == 0) return true;
    return false;
  }
  template <typename F>
  double mean_over_pixels(F f) const {
    double s = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t y = 0; y < h; ++y)
          for (int64_t x = 0; x < w; ++x) s += f(i, ch, y, x);
    return s / double(n * c * h * w);
  }
  double valid() const {
    return mean_over_pixels([&](auto i, auto ch, auto y, auto x) {
      return std::abs(known(i, ch, y, x) * (img(o, i, ch, y, x) - img(g, i, ch, y, x)));
    });
  }
  double hole() const {
    return mean_over_pixels([&](auto i, auto ch, auto y, auto x) {
      return std::abs((1 - known(i, ch, y, x)) * (img(o, i, ch, y, x) - img(g, i, ch, y, x)));
    });
  }
  double tv() const {
    return mean_over_pixels([&](auto i, auto ch, auto y, auto x) {
      double s = 0;
      if (x + 1 < w && in_p(i, ch, y, x) && in_p(i, ch, y, x + 1))
        s += std::abs(comp(i, ch, y, x + 1) - comp(i, ch, y, x));
      if (y + 1 < h && in_p(i, ch, y, x) && in_p(i, ch, y + 1, x))
        s += std::abs(comp(i, ch, y + 1, x) - comp(i, ch, y, x));
      return s;
    });
  }
  Tensor comp_tensor() const {
    std::vector<double> v(o.size());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t y = 0; y < h; ++y)
          for (int64_t x = 0; x < w; ++x) v[size_t(((i * c + ch) * h + y) * w + x)] = comp(i, ch, y, x);
    return Tensor::from_vector(v, out.shape());
  }
};

// Gram matrices by loops: G[n][i][j] = Σ_hw f[n,i,hw] f[n,j,hw] / (C·H·W).
std::vector<double> naive_gram(const Tensor& f) {
  const int64_t n = f.size(0), c = f.size(1), hw = f.size(2) * f.size(3);
  auto v = f.to_double_vector();
  std::vector<double> g(size_t(n * c * c), 0.0);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t i = 0; i < c; ++i)
      for (int64_t j = 0; j < c; ++j) {
        double s = 0;
        for (int64_t k = 0; k < hw; ++k) s += v[size_t((b * c + i) * hw + k)] * v[size_t((b * c + j) * hw + k)];
        g[size_t((b * c + i) * c + j)] = s / double(c * hw);
      }
  return g;
}

double mean_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += std::abs(a[i] - b[i]);
  return s / double(a.size());
}

std::shared_ptr<VGG16Features> tiny_vgg(uint64_t seed) {
  return std::make_shared<VGG16Features>(VGG16Options{1.0 / 32, seed, DType::F64});
}

}  // namespace

TEST_CASE("loss: hand-computed terms on a 1×3×1×4 strip (TV only inside P)") {
  // Every channel: I_gt = [1 2 3 10], I_out = [5 2.5 3 4], mask = [0 1 1 1].
  std::vector<double> gt_v, out_v;
  for (int c = 0; c < 3; ++c) {
    gt_v.insert(gt_v.end(), {1, 2, 3, 10});
    out_v.insert(out_v.end(), {5, 2.5, 3, 4});
  }
  Tensor gt = Tensor::from_vector(gt_v, {1, 3, 1, 4}), out = Tensor::from_vector(out_v, {1, 3, 1, 4});
  Tensor mask = Tensor::from_vector(std::vector<double>{0, 1, 1, 1}, {1, 1, 1, 4});
  LossTerms t = InpaintingLoss(nullptr).compute(out, gt, mask);
  // |M(out−gt)| = [0 .5 0 6] → 3·6.5/12;  |(1−M)(out−gt)| = [4 0 0 0] → 3·4/12
  CHECK(t.valid.item() == doctest::Approx(1.625).epsilon(1e-14));
  CHECK(t.hole.item() == doctest::Approx(1.0).epsilon(1e-14));
  // I_comp = [5 2 3 10]; P = {0, 1}; only the pair (0,1) counts: 3·|2−5|/12. The jump 3→10
  // lies outside P (whole-image TV would give 3·11/12).
  CHECK(t.tv.item() == doctest::Approx(0.75).epsilon(1e-14));
  CHECK(tv_region(mask).to_double_vector() == std::vector<double>{1, 1, 0, 0});
  CHECK(t.perceptual.item() == 0);
  CHECK(t.style_out.item() == 0);
  CHECK(t.style_comp.item() == 0);
  CHECK(t.total.item() == doctest::Approx(1.625 + 6 * 1.0 + 0.1 * 0.75).epsilon(1e-14));
  CHECK(t.total.shape() == Shape{});
}

TEST_CASE("loss: hand-computed terms on a 4×4 image with one hole pixel") {
  // I_gt(y,x) = 4y + x in every channel, I_out = 0.5 everywhere, hole at (0,0).
  std::vector<double> gt_v;
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 16; ++v) gt_v.push_back(v);
  Tensor gt = Tensor::from_vector(gt_v, {1, 3, 4, 4}), out = Tensor::full({1, 3, 4, 4}, 0.5, DType::F64);
  Tensor mask = Tensor::ones({1, 1, 4, 4}, DType::F64);
  mask.set({0, 0, 0, 0}, 0);
  LossTerms t = InpaintingLoss(nullptr).compute(out, gt, mask);
  CHECK(t.valid.item() == doctest::Approx(3 * 112.5 / 48).epsilon(1e-14));  // Σ_{v=1..15} (v − .5)
  CHECK(t.hole.item() == doctest::Approx(3 * 0.5 / 48).epsilon(1e-14));
  // P = {(0,0),(0,1),(1,0),(1,1)}, I_comp(0,0) = 0.5: |1−.5| + |5−4| + |4−.5| + |5−1| = 9
  CHECK(t.tv.item() == doctest::Approx(3 * 9.0 / 48).epsilon(1e-14));
}

TEST_CASE("loss: pixel and TV terms match naive loops (1- and 3-channel masks)") {
  const int64_t shapes[3][3] = {{2, 5, 6}, {1, 7, 3}, {3, 4, 9}};
  uint64_t seed = 1;
  for (const auto& s : shapes) {
    for (int64_t mc : {1, 3}) {
      CAPTURE(s[1]);
      CAPTURE(mc);
      Tensor out = testing::rand_leaf({s[0], 3, s[1], s[2]}, seed++);
      Tensor gt = testing::rand_leaf({s[0], 3, s[1], s[2]}, seed++).detach();
      Tensor mask = random_mask({s[0], mc, s[1], s[2]}, seed++, 0.25);
      Naive ref{out, gt, mask};
      LossTerms t = InpaintingLoss(nullptr).compute(out, gt, mask);
      CHECK(t.valid.item() == doctest::Approx(ref.valid()).epsilon(1e-12));
      CHECK(t.hole.item() == doctest::Approx(ref.hole()).epsilon(1e-12));
      CHECK(t.tv.item() == doctest::Approx(ref.tv()).epsilon(1e-12));
      CHECK(t.tv.item() > 0);
      CHECK(testing::max_rel_diff(composite(out, gt, mask), ref.comp_tensor()) < 1e-15);
    }
  }
  // A 1-channel mask and its 3-channel copy give the same loss; f32 masks are accepted.
  Tensor out = testing::rand_leaf({1, 3, 6, 6}, 40), gt = testing::rand_leaf({1, 3, 6, 6}, 41);
  Tensor m1 = random_mask({1, 1, 6, 6}, 42, 0.3);
  Tensor m3 = concat({m1, m1, m1}, 1);
  LossTerms a = InpaintingLoss(nullptr).compute(out, gt, m1);
  LossTerms b = InpaintingLoss(nullptr).compute(out, gt, m3.to(DType::F32));
  CHECK(a.total.item() == doctest::Approx(b.total.item()).epsilon(1e-12));
  CHECK(a.tv.item() == doctest::Approx(b.tv.item()).epsilon(1e-12));
}

TEST_CASE("loss: Gram matrix and the VGG terms match naive loops") {
  Generator gen(3);
  Tensor f = Tensor::randn({2, 5, 3, 4}, gen, DType::F64);
  auto want = naive_gram(f);
  CHECK(gram_matrix(f).shape() == Shape{2, 5, 5});
  CHECK(mean_abs_diff(gram_matrix(f).to_double_vector(), want) < 1e-15);

  auto vgg = tiny_vgg(7);
  for (int64_t n : {1, 2}) {
    Tensor out = testing::rand_leaf({n, 3, 16, 8}, 10 + uint64_t(n));
    Tensor gt = testing::rand_leaf({n, 3, 16, 8}, 20 + uint64_t(n)).detach();
    Tensor mask = random_mask({n, 1, 16, 8}, 30 + uint64_t(n), 0.3);
    Tensor comp = Naive{out, gt, mask}.comp_tensor();
    auto fo = vgg->forward(out.detach()), fc = vgg->forward(comp), fg = vgg->forward(gt);
    double perceptual = 0, style_out = 0, style_comp = 0;
    for (size_t p = 0; p < 3; ++p) {
      perceptual += mean_abs_diff(fo[p].to_double_vector(), fg[p].to_double_vector()) +
                    mean_abs_diff(fc[p].to_double_vector(), fg[p].to_double_vector());
      style_out += mean_abs_diff(naive_gram(fo[p]), naive_gram(fg[p]));
      style_comp += mean_abs_diff(naive_gram(fc[p]), naive_gram(fg[p]));
    }
    LossWeights w{0.5, 2, 0.3, 40, 0.7};
    LossTerms t = InpaintingLoss(vgg, w).compute(out, gt, mask);
    CHECK(t.perceptual.item() == doctest::Approx(perceptual).epsilon(1e-12));
    CHECK(t.style_out.item() == doctest::Approx(style_out).epsilon(1e-12));
    CHECK(t.style_comp.item() == doctest::Approx(style_comp).epsilon(1e-12));
    CHECK(style_out != doctest::Approx(style_comp));
    const double total = 0.5 * t.valid.item() + 2 * t.hole.item() + 0.3 * perceptual +
                         40 * (style_out + style_comp) + 0.7 * t.tv.item();
    CHECK(t.total.item() == doctest::Approx(total).epsilon(1e-12));
  }
}

TEST_CASE("loss: f64 gradchecks of every term and the total w.r.t. I_out") {
  auto vgg = tiny_vgg(9);
  Tensor out = testing::rand_leaf({1, 3, 8, 8}, 50);
  Tensor gt = testing::rand_leaf({1, 3, 8, 8}, 51).detach();
  Tensor mask = Tensor::ones({1, 1, 8, 8}, DType::F64);
  for (int64_t y = 2; y < 5; ++y)
    for (int64_t x = 3; x < 7; ++x) mask.set({0, 0, y, x}, 0);
  mask.set({0, 0, 7, 0}, 0);  // a hole at the border too
  // Pixel and TV terms need no VGG; the VGG terms sample 64 of the 192 elements (evenly
  // spaced, so the hole is covered) to keep the test fast.
  InpaintingLoss pixels_only(nullptr), loss(vgg);
  const char* names[] = {"valid", "hole", "tv", "perceptual", "style_out", "style_comp", "total"};
  for (int term = 0; term < 7; ++term) {
    CAPTURE(names[term]);
    const InpaintingLoss& l = term < 3 ? pixels_only : loss;
    auto f = [&](const std::vector<Tensor>& in) {
      LossTerms t = l.compute(in[0], in[1], in[2]);
      const Tensor* all[] = {&t.valid, &t.hole, &t.tv, &t.perceptual, &t.style_out, &t.style_comp, &t.total};
      return *all[term];
    };
    testing::GradcheckOptions options{.rtol = 1e-5, .atol = 1e-10};
    if (term >= 3) options.max_checks_per_input = 64;
    auto r = testing::gradcheck(f, {out, gt, mask}, options);
    CHECK_MESSAGE(r.ok, r.report);
    CHECK(r.checked >= (term >= 3 ? 64 : 192));
  }
  // The gradient reaches I_out only: not the mask, not I_gt, not VGG. Every input here
  // requires grad, so a term that forgot to detach one of them would fill its .grad.
  Tensor gt_leaf = gt.clone().set_requires_grad(true);
  Tensor mask_leaf = mask.clone().set_requires_grad(true);
  out.zero_grad();
  loss.compute(out, gt_leaf, mask_leaf).total.backward();
  CHECK(out.grad().defined());
  CHECK_FALSE(gt_leaf.grad().defined());
  CHECK_FALSE(mask_leaf.grad().defined());
  for (auto* p : vgg->parameters()) CHECK(!p->grad().defined());
  // The check can fail: the same loss with I_gt not detached does reach it.
  Tensor gt_other = gt.clone().set_requires_grad(true);
  mean(abs(sub(out, gt_other))).backward();
  CHECK(gt_other.grad().defined());
}

TEST_CASE("loss: vgg == nullptr trains on pixels and TV; bad shapes are errors") {
  Tensor out = testing::rand_leaf({2, 3, 5, 7}, 60);
  Tensor gt = testing::rand_leaf({2, 3, 5, 7}, 61).detach();
  Tensor mask = random_mask({2, 1, 5, 7}, 62, 0.4);
  InpaintingLoss loss(nullptr, LossWeights{2, 3, 0.05, 120, 0.5});
  CHECK(!loss.has_vgg());
  LossTerms t = loss.compute(out, gt, mask);
  CHECK(t.total.item() == doctest::Approx(2 * t.valid.item() + 3 * t.hole.item() + 0.5 * t.tv.item()).epsilon(1e-14));
  auto f = [&](const std::vector<Tensor>& in) { return loss.compute(in[0], in[1], in[2]).total; };
  auto r = testing::gradcheck(f, {out, gt, mask});
  CHECK_MESSAGE(r.ok, r.report);

  CHECK_THROWS_WITH_AS(loss.compute(out, testing::rand_leaf({2, 3, 5, 6}, 1), mask),
                       "InpaintingLoss: I_gt is [2, 3, 5, 6], I_out is [2, 3, 5, 7]", Error);
  CHECK_THROWS_WITH_AS(loss.compute(out, gt, Tensor::ones({2, 2, 5, 7}, DType::F64)),
                       "InpaintingLoss: mask must be N×1×H×W or N×C×H×W for I_out [2, 3, 5, 7], "
                       "got [2, 2, 5, 7]",
                       Error);
}

TEST_CASE("loss: the hole term on K×K block means matches a naive loop, and its f64 gradcheck") {
  // 2×3×7×10 with K = 3: blocks over rows 0–5 and columns 0–8; row 6 and column 9 are left out.
  Tensor out = testing::rand_leaf({2, 3, 7, 10}, 70);
  Tensor gt = testing::rand_leaf({2, 3, 7, 10}, 71).detach();
  Tensor mask = random_mask({2, 1, 7, 10}, 72, 0.4);
  LossWeights w;
  w.hole_block = 3;
  const InpaintingLoss loss(nullptr, w);
  Naive ref{out, gt, mask};
  double expect = 0;
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t ch = 0; ch < 3; ++ch)
      for (int64_t by = 0; by < 2; ++by)
        for (int64_t bx = 0; bx < 3; ++bx) {
          double s = 0;
          for (int64_t y = by * 3; y < by * 3 + 3; ++y)
            for (int64_t x = bx * 3; x < bx * 3 + 3; ++x)
              s += (1 - ref.known(i, ch, y, x)) * (ref.img(ref.o, i, ch, y, x) - ref.img(ref.g, i, ch, y, x));
          expect += std::abs(s / 9);
        }
  expect /= 2 * 3 * 2 * 3;
  LossTerms t = loss.compute(out, gt, mask);
  CHECK(t.hole.item() == doctest::Approx(expect).epsilon(1e-12));
  // Block means let opposite errors inside a block cancel: never more than the per-pixel term,
  // and less here (random errors); K = 1 is the per-pixel term exactly.
  const double per_pixel = InpaintingLoss(nullptr).compute(out, gt, mask).hole.item();
  CHECK(t.hole.item() < 0.8 * per_pixel);
  CHECK(block_means(out, 1).raw_data() == out.raw_data());
  auto f = [&](const std::vector<Tensor>& in) { return loss.compute(in[0], in[1], in[2]).total; };
  auto r = testing::gradcheck(f, {out, gt, mask});
  CHECK_MESSAGE(r.ok, r.report);
  // A divisible size takes no copy and gives the same as a hand mean; bad sides are errors.
  Tensor x = testing::rand_leaf({1, 1, 4, 4}, 73);
  CHECK(block_means(x, 4).item() == doctest::Approx(mean(x).item()).epsilon(1e-14));
  CHECK_THROWS_WITH_AS(block_means(x, 0), "block_means: the block side must be at least 1, got 0", Error);
  CHECK_THROWS_WITH_AS(block_means(x, 5), "block_means: 5×5 blocks do not fit [1, 1, 4, 4]", Error);
}
