// partial_conv2d against a naive loop of PAPER.md's formula on a full C-channel mask (so the
// grouped-mask path is shown to give identical numbers), and finite differences in f64.
#include <doctest/doctest.h>

#include "core/ops.h"
#include "tests/gradcheck.h"

using namespace pconv;

namespace {

struct PConvCase {
  std::vector<int64_t> groups;  // channels per mask group
  int64_t N, H, W, K, k, stride, pad;
  bool bias;
  int64_t C() const {
    int64_t c = 0;
    for (int64_t g : groups) c += g;
    return c;
  }
  int64_t Ho() const { return (H + 2 * pad - k) / stride + 1; }
  int64_t Wo() const { return (W + 2 * pad - k) / stride + 1; }
  std::string name() const {
    std::string s = "groups";
    for (int64_t g : groups) (s += ' ') += std::to_string(g);
    return s + ", x " + std::to_string(N) + "x" + std::to_string(H) + "x" + std::to_string(W) +
           ", " + std::to_string(K) + " filters " + std::to_string(k) + "x" + std::to_string(k) +
           " stride " + std::to_string(stride) + " pad " + std::to_string(pad);
  }
};

// 0/1 mask: ~25 % random holes (they differ with `seed`) plus one big rectangular hole per
// image (the same for every seed, so all groups share it), so that some windows see nothing,
// some a part, some everything.
Tensor make_mask(int64_t N, int64_t H, int64_t W, uint64_t seed) {
  Generator gen(seed);
  Tensor m = Tensor::rand({N, 1, H, W}, gen, DType::F64);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) {
        const bool big_hole = i >= 1 && i < 2 * H / 3 + 1 && j >= W / 4 - n && j < W - 1;
        m.set({n, 0, i, j}, big_hole || m.at({n, 0, i, j}) < 0.25 ? 0.0 : 1.0);
      }
  return m;
}

Mask make_grouped_mask(const PConvCase& t, uint64_t seed) {
  Mask mask;
  for (size_t g = 0; g < t.groups.size(); ++g)
    mask.push_back({t.groups[g], make_mask(t.N, t.H, t.W, seed + 7 * g)});
  return mask;
}

struct Reference {
  std::vector<double> out, new_mask;
};

// PAPER.md: x' = Wᵀ(X⊙M)·sum(1)/sum(M) + b where sum(M) > 0, else 0, with M the full
// C-channel mask, sum(1) = C·k·k and padding counted as hole.
Reference naive_pconv(const PConvCase& t, const Tensor& x, const Tensor& m_full, const Tensor& w,
                      const Tensor& b) {
  Reference r;
  for (int64_t n = 0; n < t.N; ++n)
    for (int64_t o = 0; o < t.K; ++o)
      for (int64_t oh = 0; oh < t.Ho(); ++oh)
        for (int64_t ow = 0; ow < t.Wo(); ++ow) {
          double conv = 0, sum_m = 0;
          for (int64_t c = 0; c < t.C(); ++c)
            for (int64_t ki = 0; ki < t.k; ++ki)
              for (int64_t kj = 0; kj < t.k; ++kj) {
                const int64_t i = oh * t.stride - t.pad + ki, j = ow * t.stride - t.pad + kj;
                if (i < 0 || i >= t.H || j < 0 || j >= t.W) continue;
                const double m = m_full.at({n, c, i, j});
                conv += w.at({o, c, ki, kj}) * x.at({n, c, i, j}) * m;
                sum_m += m;
              }
          const double sum_1 = double(t.C() * t.k * t.k);
          const bool valid = sum_m > 0;
          r.out.push_back(valid ? conv * sum_1 / sum_m + (b.defined() ? b.at({o}) : 0.0) : 0.0);
          if (o == 0) r.new_mask.push_back(valid ? 1.0 : 0.0);
        }
  return r;
}

const std::vector<PConvCase> kCases = {
    {{3, 4}, 2, 9, 10, 5, 3, 1, 1, true},  // a concat of two sources with different masks
    {{3}, 1, 15, 13, 4, 7, 2, 3, true},    // PConv1-like 7×7 s2 on an RGB image
    {{2, 2, 3}, 2, 11, 9, 3, 5, 2, 2, false},
    {{4, 3}, 1, 8, 8, 3, 3, 2, 1, true},   // 3×3 s2
    {{5}, 1, 6, 7, 2, 1, 1, 0, true},      // 1×1: holes stay holes
};

}  // namespace

TEST_CASE("partial_conv2d: grouped masks match the paper's formula on a full mask") {
  uint64_t seed = 40;
  for (const PConvCase& t : kCases) {
    CAPTURE(t.name());
    Generator gen(seed++);
    Tensor x = Tensor::randn({t.N, t.C(), t.H, t.W}, gen, DType::F64);
    Tensor w = Tensor::randn({t.K, t.C(), t.k, t.k}, gen, DType::F64);
    Tensor b = t.bias ? Tensor::rand({t.K}, gen, DType::F64, Device::CPU, 1.0, 2.0) : Tensor();
    const Mask mask = make_grouped_mask(t, seed * 13);
    const Tensor full = mask_expand(mask);
    REQUIRE(full.shape() == Shape{t.N, t.C(), t.H, t.W});
    const Reference ref = naive_pconv(t, x, full, w, b);

    for (DType dt : {DType::F64, DType::F32}) {
      const std::string dtype = dtype_name(dt);
      CAPTURE(dtype);
      Mask m = mask;
      for (auto& g : m) g.mask = g.mask.to(dt);
      PConvResult r = partial_conv2d(x.to(dt), m, w.to(dt), t.bias ? b.to(dt) : Tensor(), t.stride, t.pad);
      REQUIRE(r.out.shape() == Shape{t.N, t.K, t.Ho(), t.Wo()});
      REQUIRE(r.mask.size() == 1);
      CHECK(r.mask[0].channels == t.K);
      REQUIRE(r.mask[0].mask.shape() == Shape{t.N, 1, t.Ho(), t.Wo()});
      CHECK(r.mask[0].mask.to(DType::F64).to_double_vector() == ref.new_mask);
      CHECK(testing::max_rel_diff(r.out, Tensor::from_vector(ref.out, r.out.shape())) <
            (dt == DType::F64 ? 1e-12 : 2e-5));
      // Holes are exactly 0, bias included; the case must have some.
      const auto out = r.out.to(DType::F64).to_double_vector();
      int64_t holes = 0;
      for (size_t i = 0; i < out.size(); ++i) {
        const size_t pixel = size_t((int64_t(i) / (t.K * t.Ho() * t.Wo())) * t.Ho() * t.Wo() +
                                    int64_t(i) % (t.Ho() * t.Wo()));
        if (ref.new_mask[pixel] == 0) {
          ++holes;
          CHECK(out[i] == 0.0);
        }
      }
      CHECK(holes > 0);
    }
  }
}

TEST_CASE("partial_conv2d: a fully valid mask is a plain convolution away from the border") {
  // With every input known, count = C·k·k inside the image, so the ratio is exactly 1 there.
  Generator gen(5);
  Tensor x = Tensor::randn({1, 3, 8, 8}, gen, DType::F64), w = Tensor::randn({2, 3, 3, 3}, gen, DType::F64);
  Mask ones{{3, Tensor::ones({1, 1, 8, 8}, DType::F64)}};
  Tensor y = partial_conv2d(x, ones, w, Tensor(), 1, 1).out, ref = conv2d(x, w, Tensor(), 1, 1);
  for (int64_t i = 1; i < 7; ++i)
    for (int64_t j = 1; j < 7; ++j) CHECK(y.at({0, 1, i, j}) == doctest::Approx(ref.at({0, 1, i, j})).epsilon(1e-12));
  // At a corner 4 of the 9 taps are in the image: ratio 9/4.
  CHECK(y.at({0, 0, 0, 0}) == doctest::Approx(ref.at({0, 0, 0, 0}) * 9.0 / 4.0).epsilon(1e-12));
}

TEST_CASE("partial_conv2d: f64 gradients of input, weight and bias match finite differences") {
  uint64_t seed = 70;
  for (const PConvCase& t : kCases) {
    CAPTURE(t.name());
    const Mask mask = make_grouped_mask(t, seed * 13);
    Tensor x = testing::rand_leaf({t.N, t.C(), t.H, t.W}, seed++);
    Tensor w = testing::rand_leaf({t.K, t.C(), t.k, t.k}, seed++);
    Tensor b = testing::rand_leaf({t.K}, seed++);
    auto f = [&](const std::vector<Tensor>& in) {
      return partial_conv2d(in[0], mask, in[1], in[2], t.stride, t.pad).out;
    };
    // The output is linear in each input, so a central difference has no truncation error
    // and a large step only shrinks the rounding error (ratios up to C·k·k make sums large).
    testing::GradcheckOptions opt;
    opt.eps = 1e-3;
    auto r = testing::gradcheck(f, {x, w, b}, opt);
    CHECK_MESSAGE(r.ok, r.report);
    // x's gradient is zero at holes: x enters only as x ⊙ m.
    const Tensor full = mask_expand(mask);
    auto gx = x.grad().to_double_vector(), mv = full.to_double_vector();
    for (size_t i = 0; i < gx.size(); ++i)
      if (mv[i] == 0) CHECK(gx[i] == 0.0);
  }
}

TEST_CASE("mask_expand and mask_channels") {
  Tensor a = make_mask(2, 3, 4, 1), b = make_mask(2, 3, 4, 2);
  const Mask m{{2, a}, {3, b}};
  CHECK(mask_channels(m) == 5);
  Tensor full = mask_expand(m);
  REQUIRE(full.shape() == Shape{2, 5, 3, 4});
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 5; ++c)
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 4; ++j)
          CHECK(full.at({n, c, i, j}) == (c < 2 ? a : b).at({n, 0, i, j}));
}

TEST_CASE("partial_conv2d: argument errors") {
  Tensor x = Tensor::zeros({1, 4, 6, 6}), w = Tensor::zeros({2, 4, 3, 3});
  Tensor m = Tensor::ones({1, 1, 6, 6});
  CHECK_THROWS_WITH_AS(partial_conv2d(x, {{3, m}}, w, Tensor(), 1, 1),
                       "partial_conv2d: mask groups cover 3 channels, input [1, 4, 6, 6] has 4", Error);
  CHECK_THROWS_WITH_AS(partial_conv2d(x, {{4, Tensor::ones({1, 1, 5, 6})}}, w, Tensor(), 1, 1),
                       "partial_conv2d: mask group 0 has shape [1, 1, 5, 6], expected [1, 1, 6, 6] "
                       "for input [1, 4, 6, 6]",
                       Error);
  CHECK_THROWS_WITH_AS(partial_conv2d(x, {{4, m}}, Tensor::zeros({2, 3, 3, 3}), Tensor(), 1, 1),
                       "partial_conv2d: weight has 3 input channels, input has 4", Error);
  CHECK_THROWS_AS(partial_conv2d(x, {}, w, Tensor(), 1, 1), Error);
  CHECK_THROWS_AS(partial_conv2d(x, {{4, Tensor::ones({1, 1, 6, 6}, DType::F64)}}, w, Tensor(), 1, 1), Error);
  CHECK_THROWS_AS(partial_conv2d(x, {{2, m}, {2, Tensor::ones({1, 2, 6, 6})}}, w, Tensor(), 1, 1), Error);
}
