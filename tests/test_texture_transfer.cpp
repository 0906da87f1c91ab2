// models/texture_transfer.h: its blur and nearest-patch search against plain loops, and the
// stage itself on images whose answer is known (stripes, a flat colour, no hole).
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <tuple>

#include "core/tensor.h"
#include "models/texture_transfer.h"

using namespace pconv;

namespace {

ImageU8 make_image(int w, int h, uint8_t (*f)(int x, int y, int c)) {
  ImageU8 img;
  img.width = w, img.height = h, img.channels_in_file = 3;
  img.rgb.resize(size_t(w * h * 3));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) img.rgb[size_t((y * w + x) * 3 + c)] = f(x, y, c);
  return img;
}

// Mean |horizontal difference| of the luminance-free red channel over the box.
double box_gradient(const ImageU8& img, int x0, int y0, int x1, int y1) {
  double s = 0;
  int n = 0;
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x + 1 < x1; ++x, ++n)
      s += std::abs(int(img.rgb[size_t((y * img.width + x + 1) * 3)]) - int(img.rgb[size_t((y * img.width + x) * 3)]));
  return s / n;
}

double box_mean(const ImageU8& img, int x0, int y0, int x1, int y1) {
  double s = 0;
  int n = 0;
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x, ++n) s += img.rgb[size_t((y * img.width + x) * 3)];
  return s / n;
}

}  // namespace

TEST_CASE("texture transfer: the Gaussian blur matches a 2-D sum with mirrored borders") {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0, 255);
  for (const auto& shape : {std::tuple{7, 9, 1.3}, std::tuple{5, 4, 3.0}, std::tuple{1, 6, 0.8}}) {
    // Plain variables, not structured bindings: clang 14 cannot capture those (CAPTURE does).
    const int h = std::get<0>(shape), w = std::get<1>(shape);
    const double sigma = std::get<2>(shape);
    CAPTURE(h);
    CAPTURE(sigma);
    std::vector<float> planes(size_t(3 * h * w));
    for (float& v : planes) v = u(rng);
    const std::vector<float> got = texture_detail::gaussian_blur(planes, h, w, sigma);
    const int r = int(std::ceil(3 * sigma));
    auto mirror = [](int i, int n) {
      if (n == 1) return 0;
      for (;;) {
        if (i < 0) i = -i;
        else if (i >= n) i = 2 * (n - 1) - i;
        else return i;
      }
    };
    double norm = 0;
    for (int i = -r; i <= r; ++i) norm += std::exp(-0.5 * i * i / (sigma * sigma));
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
          double s = 0;
          for (int i = -r; i <= r; ++i)
            for (int j = -r; j <= r; ++j)
              s += std::exp(-0.5 * (i * i + j * j) / (sigma * sigma)) * planes[size_t((c * h + mirror(y + i, h)) * w + mirror(x + j, w))];
          CHECK(got[size_t((c * h + y) * w + x)] == doctest::Approx(s / (norm * norm)).epsilon(1e-5));
        }
  }
}

TEST_CASE("texture transfer: the nearest rows are those of an exhaustive loop") {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(0, 255);
  const int n = 37, m = 211, d = 12;
  std::vector<float> t(size_t(n * d)), s(size_t(m * d));
  for (float& v : t) v = u(rng);
  for (float& v : s) v = u(rng);
  const std::vector<int64_t> got = texture_detail::nearest_rows(t, s, d);
  REQUIRE(got.size() == size_t(n));
  for (int i = 0; i < n; ++i) {
    int best = 0;
    double best_d = 1e300;
    for (int j = 0; j < m; ++j) {
      double dist = 0;
      for (int k = 0; k < d; ++k) dist += std::pow(double(t[size_t(i * d + k)]) - s[size_t(j * d + k)], 2);
      if (dist < best_d) best_d = dist, best = j;
    }
    CHECK(got[size_t(i)] == best);
  }
  // A target equal to a source finds it.
  std::vector<float> same(s.begin() + 5 * d, s.begin() + 6 * d);
  CHECK(texture_detail::nearest_rows(same, s, d)[0] == 5);
}

TEST_CASE("texture transfer: a smooth fill of stripes gets their detail back; known pixels stay") {
  // Vertical stripes of period 4 (60, 60, 200, 200); a 20×20 hole filled with their mean, 130,
  // as a pixel-loss network would fill it.
  auto stripes = [](int x, int, int c) { return uint8_t(x % 4 < 2 ? 60 + c : 200 - c); };
  const ImageU8 truth = make_image(64, 64, stripes);
  MaskImage mask(64, 64);
  ImageU8 filled = truth;
  for (int y = 22; y < 42; ++y)
    for (int x = 22; x < 42; ++x) {
      mask.known[size_t(y * 64 + x)] = 0;
      for (int c = 0; c < 3; ++c) filled.rgb[size_t((y * 64 + x) * 3 + c)] = 130;
    }
  TextureTransferOptions full;
  full.amount = 1;  // the whole high-pass (the default scales it down for SSIM's sake)
  const ImageU8 out = texture_transfer(filled, mask, full);
  for (size_t i = 0; i < size_t(64 * 64); ++i)
    if (mask.known[i] > 0.5f)
      for (size_t c = 0; c < 3; ++c) REQUIRE(out.rgb[3 * i + c] == filled.rgb[3 * i + c]);
  // Inside the hole (2 px in from its edge): the stripes' gradient, not the flat fill's 0, and
  // the fill's mean colour kept.
  const double g_truth = box_gradient(truth, 24, 24, 40, 40), g_fill = box_gradient(filled, 24, 24, 40, 40);
  const double g_out = box_gradient(out, 24, 24, 40, 40);
  CHECK(g_fill == 0);
  CHECK(g_out > 0.6 * g_truth);
  CHECK(g_out < 1.3 * g_truth);
  CHECK(std::abs(box_mean(out, 24, 24, 40, 40) - 130) < 6);
  // Deterministic; the default amount gives less of the same.
  CHECK(texture_transfer(filled, mask, full).rgb == out.rgb);
  const double g_default = box_gradient(texture_transfer(filled, mask), 24, 24, 40, 40);
  CHECK(g_default > 0.4 * g_truth);
  CHECK(g_default < g_out);
  // Without coherence every target takes its nearest source: still the stripes' detail.
  TextureTransferOptions nearest = full;
  nearest.coherence = 0;
  CHECK(box_gradient(texture_transfer(filled, mask, nearest), 24, 24, 40, 40) > 0.6 * g_truth);
}

TEST_CASE("texture transfer: nothing to do leaves the image as it is; bad calls are errors") {
  auto flat = [](int, int, int c) { return uint8_t(90 + 10 * c); };
  ImageU8 img = make_image(48, 40, flat);
  img.alpha.assign(size_t(48 * 40), 7);
  MaskImage mask(40, 48);
  CHECK(texture_transfer(img, mask).rgb == img.rgb);  // no hole
  for (int y = 10; y < 30; ++y)
    for (int x = 10; x < 30; ++x) mask.known[size_t(y * 48 + x)] = 0;
  const ImageU8 out = texture_transfer(img, mask);
  CHECK(out.rgb == img.rgb);  // a flat photo has no detail to give
  CHECK(out.alpha == img.alpha);
  MaskImage all(40, 48, 0.0f);
  CHECK(texture_transfer(img, all).rgb == img.rgb);  // no source patch
  const ImageU8 tiny = make_image(5, 5, flat);
  CHECK(texture_transfer(tiny, MaskImage(5, 5, 0.0f)).rgb == tiny.rgb);
  CHECK_THROWS_WITH_AS(texture_transfer(img, MaskImage(40, 40)), "texture transfer: the mask is 40×40, the image 48×40",
                       Error);
  TextureTransferOptions bad;
  bad.patch = 7;
  CHECK_THROWS_AS(texture_transfer(img, mask, bad), Error);
}
