#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "core/io/safetensors.h"
#include "core/ops.h"
#include "models/vgg16.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"

using namespace pconv;

namespace {

// A plain NCHW activation for the naive reference.
struct Act {
  int64_t n, c, h, w;
  std::vector<double> v;
  double& at(int64_t i, int64_t ch, int64_t y, int64_t x) { return v[size_t(((i * c + ch) * h + y) * w + x)]; }
};

Act naive_conv3x3_relu(Act& in, const Tensor& weight, const Tensor& bias) {
  const auto wv = weight.to_double_vector(), bv = bias.to_double_vector();
  const int64_t k = weight.size(0);
  Act out{in.n, k, in.h, in.w, std::vector<double>(size_t(in.n * k * in.h * in.w))};
  for (int64_t i = 0; i < in.n; ++i)
    for (int64_t o = 0; o < k; ++o)
      for (int64_t y = 0; y < in.h; ++y)
        for (int64_t x = 0; x < in.w; ++x) {
          double s = bv[size_t(o)];
          for (int64_t c = 0; c < in.c; ++c)
            for (int64_t dy = 0; dy < 3; ++dy)
              for (int64_t dx = 0; dx < 3; ++dx) {
                const int64_t yy = y + dy - 1, xx = x + dx - 1;  // pad 1: zeros outside
                if (yy < 0 || yy >= in.h || xx < 0 || xx >= in.w) continue;
                s += wv[size_t(((o * in.c + c) * 3 + dy) * 3 + dx)] * in.at(i, c, yy, xx);
              }
          out.at(i, o, y, x) = std::max(s, 0.0);
        }
  return out;
}

Act naive_pool(Act& in) {
  Act out{in.n, in.c, in.h / 2, in.w / 2, std::vector<double>(size_t(in.n * in.c * (in.h / 2) * (in.w / 2)))};
  for (int64_t i = 0; i < in.n; ++i)
    for (int64_t c = 0; c < in.c; ++c)
      for (int64_t y = 0; y < out.h; ++y)
        for (int64_t x = 0; x < out.w; ++x)
          out.at(i, c, y, x) = std::max({in.at(i, c, 2 * y, 2 * x), in.at(i, c, 2 * y, 2 * x + 1),
                                         in.at(i, c, 2 * y + 1, 2 * x), in.at(i, c, 2 * y + 1, 2 * x + 1)});
  return out;
}

// torchvision's features[0:17], written out layer by layer.
std::vector<Act> naive_vgg(const VGG16Features& vgg, const Tensor& x) {
  Act a{x.size(0), x.size(1), x.size(2), x.size(3), x.to_double_vector()};
  auto conv = [&](Act& h, int i) { return naive_conv3x3_relu(h, vgg.weight(i), vgg.bias(i)); };
  Act c0 = conv(a, 0), c2 = conv(c0, 1), p1 = naive_pool(c2);
  Act c5 = conv(p1, 2), c7 = conv(c5, 3), p2 = naive_pool(c7);
  Act c10 = conv(p2, 4), c12 = conv(c10, 5), c14 = conv(c12, 6), p3 = naive_pool(c14);
  return {p1, p2, p3};
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

std::map<std::string, Tensor> features_state(const VGG16Features& vgg) {
  std::map<std::string, Tensor> s;
  for (int i = 0; i < VGG16Features::kConvCount; ++i) {
    const std::string base = "features." + std::to_string(VGG16Features::kConvIndices[size_t(i)]);
    s[base + ".weight"] = vgg.weight(i);
    s[base + ".bias"] = vgg.bias(i);
  }
  return s;
}

}  // namespace

TEST_CASE("vgg16: layout, widths and frozen weights") {
  VGG16Features full({1.0, 0, DType::F32});
  CHECK(full.weight(0).shape() == Shape{64, 3, 3, 3});
  CHECK(full.weight(2).shape() == Shape{128, 64, 3, 3});
  CHECK(full.weight(6).shape() == Shape{256, 256, 3, 3});
  CHECK(full.bias(4).shape() == Shape{256});
  CHECK(full.feature_channels() == std::array<int64_t, 3>{64, 128, 256});
  // 7 convolutions of features[0:17]: 1792 + 36928 + 73856 + 147584 + 295168 + 2·590080
  CHECK(full.parameter_count() == 1735488);
  for (auto* p : full.parameters()) CHECK(!p->requires_grad());

  VGG16Features tiny({1.0 / 16, 3, DType::F64});
  CHECK(tiny.feature_channels() == std::array<int64_t, 3>{4, 8, 16});
  CHECK(tiny.weight(1).shape() == Shape{4, 4, 3, 3});
  CHECK_THROWS_WITH_AS(tiny.forward(Tensor::zeros({1, 4, 8, 8}, DType::F64)),
                       "VGG16Features: input must be N×3×H×W, got [1, 4, 8, 8]", Error);
  CHECK_THROWS_AS(tiny.forward(Tensor::zeros({1, 3, 8, 8}, DType::F32)), Error);
  CHECK_THROWS_AS(tiny.forward(Tensor::zeros({1, 3, 4, 8}, DType::F64)), Error);
}

TEST_CASE("vgg16: forward matches a naive layer-by-layer computation") {
  const int64_t cases[3][4] = {{1, 8, 8, 1}, {2, 16, 8, 2}, {1, 12, 20, 3}};  // n, h, w, seed
  for (const auto& c : cases) {
    const int64_t n = c[0], h = c[1], w = c[2], seed = c[3];
    CAPTURE(h);
    CAPTURE(w);
    VGG16Features vgg({1.0 / 16, uint64_t(seed), DType::F64});
    Generator gen(100 + uint64_t(seed));
    Tensor x = Tensor::randn({n, 3, h, w}, gen, DType::F64);
    auto got = vgg.forward(x);
    auto want = naive_vgg(vgg, x);
    REQUIRE(got.size() == 3);
    for (size_t p = 0; p < 3; ++p) {
      CHECK(got[p].shape() == Shape{want[p].n, want[p].c, want[p].h, want[p].w});
      const double err = max_abs_diff(got[p].to_double_vector(), want[p].v);
      MESSAGE("pool" << p + 1 << " max |diff| " << err);
      CHECK(err < 1e-12);
    }
  }
}

TEST_CASE("vgg16: gradient reaches the input, never the weights") {
  VGG16Features vgg({1.0 / 32, 5, DType::F64});
  Tensor x = testing::rand_leaf({1, 3, 8, 8}, 6);
  auto f = [&](const std::vector<Tensor>& in) {
    auto feats = vgg.forward(in[0]);
    // every level in one scalar-valued function of the input
    return concat({feats[0].reshape({-1}), feats[1].reshape({-1}), feats[2].reshape({-1})}, 0);
  };
  auto r = testing::gradcheck(f, {x}, {.rtol = 1e-5});
  CHECK_MESSAGE(r.ok, r.report);
  for (auto* p : vgg.parameters()) CHECK(!p->grad().defined());
}

TEST_CASE("vgg16: torchvision-layout safetensors round trip, extra keys ignored") {
  VGG16Features a({1.0 / 16, 11, DType::F32}), b({1.0 / 16, 12, DType::F32});
  auto state = features_state(a);
  // A full torchvision export also has deeper layers and the classifier.
  Generator gen(9);
  state["features.17.weight"] = Tensor::randn({32, 16, 3, 3}, gen);
  state["features.17.bias"] = Tensor::randn({32}, gen);
  state["classifier.0.weight"] = Tensor::randn({5, 7}, gen);
  const std::string path = testing::scratch_dir("vgg16_roundtrip") + "/vgg.safetensors";
  save_safetensors(path, state);

  Tensor x = Tensor::randn({1, 3, 8, 8}, gen);
  CHECK(max_abs_diff(a.forward(x)[2].to_double_vector(), b.forward(x)[2].to_double_vector()) > 1e-3);
  b.load_torchvision(path);
  for (int i = 0; i < VGG16Features::kConvCount; ++i) {
    CHECK(b.weight(i).to_float_vector() == a.weight(i).to_float_vector());
    CHECK(b.bias(i).to_float_vector() == a.bias(i).to_float_vector());
    CHECK(!b.weight(i).requires_grad());
  }
  for (size_t p = 0; p < 3; ++p)
    CHECK(a.forward(x)[p].to_float_vector() == b.forward(x)[p].to_float_vector());

  // An f32 file into an f64 net converts.
  VGG16Features c({1.0 / 16, 13, DType::F64});
  c.load_torchvision(path);
  CHECK(c.weight(3).dtype() == DType::F64);
  CHECK(max_abs_diff(c.weight(3).to_double_vector(), a.weight(3).to_double_vector()) == 0);
}

TEST_CASE("vgg16: missing or mis-shaped keys are clear errors and change nothing") {
  VGG16Features a({1.0 / 16, 21, DType::F32}), b({1.0 / 16, 22, DType::F32});
  const auto before = b.weight(0).to_float_vector();

  auto missing = features_state(a);
  missing.erase("features.12.bias");
  CHECK_THROWS_WITH_AS(b.load_torchvision(missing, "test.safetensors"),
                       "VGG16Features: test.safetensors has no tensor 'features.12.bias' (expected [16])",
                       Error);

  auto misshaped = features_state(a);
  Generator gen(1);
  misshaped["features.5.weight"] = Tensor::randn({8, 5, 3, 3}, gen);
  CHECK_THROWS_WITH_AS(b.load_torchvision(misshaped, "test.safetensors"),
                       "VGG16Features: 'features.5.weight' in test.safetensors has shape "
                       "[8, 5, 3, 3], expected [8, 4, 3, 3]",
                       Error);
  CHECK(b.weight(0).to_float_vector() == before);

  // Through a file: the path names the source.
  const std::string path = testing::scratch_dir("vgg16_missing") + "/partial.safetensors";
  save_safetensors(path, missing);
  CHECK_THROWS_WITH_AS(b.load_torchvision(path),
                       doctest::Contains("has no tensor 'features.12.bias'"), Error);
  CHECK_THROWS_AS(b.load_torchvision(path + ".absent"), Error);
}
