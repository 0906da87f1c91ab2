#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/metrics.h"

using namespace pconv;

namespace {

Tensor random_image(int64_t c, int64_t h, int64_t w, uint64_t seed) {
  Generator g(seed);
  return Tensor::rand({c, h, w}, g, DType::F64);
}

// SSIM the slow way: for every pixel whose 11×11 window fits, the Gaussian-weighted means,
// variances and covariance straight from the definition (Wang et al. 2004).
double naive_ssim(const Tensor& a, const Tensor& b) {
  const int64_t c = a.size(0), h = a.size(1), w = a.size(2);
  double g[11][11], gs = 0;
  for (int i = 0; i < 11; ++i)
    for (int j = 0; j < 11; ++j) gs += g[i][j] = std::exp(-((i - 5) * (i - 5) + (j - 5) * (j - 5)) / (2 * 2.25));
  double total = 0;
  for (int64_t ch = 0; ch < c; ++ch) {
    double s = 0;
    for (int64_t y = 5; y < h - 5; ++y)
      for (int64_t x = 5; x < w - 5; ++x) {
        double mx = 0, my = 0;
        for (int i = 0; i < 11; ++i)
          for (int j = 0; j < 11; ++j) {
            const double wt = g[i][j] / gs;
            mx += wt * a.at({ch, y + i - 5, x + j - 5}), my += wt * b.at({ch, y + i - 5, x + j - 5});
          }
        double vx = 0, vy = 0, cxy = 0;
        for (int i = 0; i < 11; ++i)
          for (int j = 0; j < 11; ++j) {
            const double wt = g[i][j] / gs;
            const double dx = a.at({ch, y + i - 5, x + j - 5}) - mx, dy = b.at({ch, y + i - 5, x + j - 5}) - my;
            vx += wt * dx * dx, vy += wt * dy * dy, cxy += wt * dx * dy;
          }
        const double c1 = 1e-4, c2 = 9e-4;
        s += (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2));
      }
    total += s / double((h - 10) * (w - 10));
  }
  return total / double(c);
}

}  // namespace

TEST_CASE("metrics: l1 and PSNR against naive sums, and a known uniform error") {
  const Tensor a = random_image(3, 9, 7, 1), b = random_image(3, 9, 7, 2);
  const auto x = a.to_double_vector(), y = b.to_double_vector();
  double l1 = 0, se = 0;
  for (size_t i = 0; i < x.size(); ++i) l1 += std::abs(x[i] - y[i]), se += (x[i] - y[i]) * (x[i] - y[i]);
  CHECK(l1_percent(a, b) == doctest::Approx(100 * l1 / double(x.size())).epsilon(1e-12));
  CHECK(psnr(a, b) == doctest::Approx(10 * std::log10(double(x.size()) / se)).epsilon(1e-12));
  // A uniform error of 0.1 everywhere: ℓ1 = 10 %, PSNR = 10·log10(1/0.01) = 20 dB.
  const Tensor c = Tensor::full({3, 5, 5}, 0.5), d = Tensor::full({3, 5, 5}, 0.6);
  CHECK(l1_percent(c, d) == doctest::Approx(10.0).epsilon(1e-6));
  CHECK(psnr(c, d) == doctest::Approx(20.0).epsilon(1e-6));
  CHECK(psnr(a, a) == std::numeric_limits<double>::infinity());
  CHECK(l1_percent(a, a) == 0.0);
  CHECK_THROWS_AS(psnr(a, random_image(3, 9, 8, 1)), Error);
}

TEST_CASE("metrics: SSIM matches the definition, is 1 for identical images, and drops with noise") {
  for (auto [h, w] : {std::pair<int64_t, int64_t>{11, 11}, {16, 13}, {24, 30}}) {
    const Tensor a = random_image(3, h, w, uint64_t(h * w));
    // b: a plus noise, so the images are correlated and SSIM is far from 0 and 1.
    Generator g(99);
    const Tensor noise = Tensor::rand({3, h, w}, g, DType::F64, Device::CPU, -0.2, 0.2);
    auto av = a.to_double_vector(), nv = noise.to_double_vector();
    for (size_t i = 0; i < av.size(); ++i) av[i] = std::clamp(av[i] + nv[i], 0.0, 1.0);
    const Tensor b = Tensor::from_vector(av, {3, h, w});
    const double s = ssim(a, b);
    CHECK(s == doctest::Approx(naive_ssim(a, b)).epsilon(1e-10));
    CHECK(s > 0.3);
    CHECK(s < 0.99);
    CHECK(ssim(a, a) == doctest::Approx(1.0).epsilon(1e-12));
    CHECK(ssim(a.to(DType::F32), b.to(DType::F32)) == doctest::Approx(s).epsilon(1e-5));
  }
  // A constant image against itself plus a constant offset: structure and contrast terms are 1,
  // the luminance term is (2μxμy + C1)/(μx² + μy² + C1).
  const Tensor c = Tensor::full({1, 12, 12}, 0.3), d = Tensor::full({1, 12, 12}, 0.5);
  CHECK(ssim(c, d) == doctest::Approx((2 * 0.15 + 1e-4) / (0.09 + 0.25 + 1e-4)).epsilon(1e-6));
  CHECK_THROWS_AS(ssim(random_image(3, 10, 20, 1), random_image(3, 10, 20, 2)), Error);
}

TEST_CASE("metrics: composite keeps known pixels of the ground truth") {
  const Tensor out = random_image(3, 4, 5, 3), gt = random_image(3, 4, 5, 4);
  MaskImage m(4, 5);
  m.set_hole(1, 2), m.set_hole(3, 0);
  const Tensor c = composite(out, gt, m);
  for (int64_t ch = 0; ch < 3; ++ch)
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 5; ++x)
        CHECK(c.at({ch, y, x}) == (m.is_hole(y, x) ? out.at({ch, y, x}) : gt.at({ch, y, x})));
  CHECK_THROWS_AS(composite(out, gt, MaskImage(5, 4)), Error);
}

TEST_CASE("metrics: evaluate_image measures the composite on the whole image") {
  const Tensor out = random_image(3, 16, 16, 5), gt = random_image(3, 16, 16, 6);
  const MaskImage m = generate_mask(16, 16, 1, 0, {0.2, 0.3});
  const ImageMetrics r = evaluate_image("x", out, gt, m);
  const Tensor c = composite(out, gt, m);
  CHECK(r.name == "x");
  CHECK(r.hole_ratio == doctest::Approx(hole_ratio(m)).epsilon(1e-15));
  CHECK(r.l1_percent == doctest::Approx(l1_percent(c, gt)).epsilon(1e-12));
  CHECK(r.psnr == doctest::Approx(psnr(c, gt)).epsilon(1e-12));
  CHECK(r.ssim == doctest::Approx(ssim(c, gt)).epsilon(1e-12));
  CHECK(r.l1_percent < l1_percent(out, gt));  // known pixels count as exact
}

TEST_CASE("metrics: hole-ratio buckets as in the paper, accumulation and tables") {
  CHECK(hole_ratio_bucket(0.005) == -1);
  CHECK(hole_ratio_bucket(0.01) == -1);
  CHECK(hole_ratio_bucket(0.0101) == 0);
  CHECK(hole_ratio_bucket(0.1) == 0);
  CHECK(hole_ratio_bucket(0.1001) == 1);
  CHECK(hole_ratio_bucket(3.0 / 10) == 2);
  CHECK(hole_ratio_bucket(0.35) == 3);
  CHECK(hole_ratio_bucket(0.6) == 5);
  CHECK(hole_ratio_bucket(0.61) == -1);
  CHECK(bucket_label(0) == "(0.01,0.1]");
  CHECK(bucket_label(5) == "(0.5,0.6]");

  MetricsTable t;
  t.add({"a", 0.15, 1.0, 30.0, 0.9});
  t.add({"b", 0.18, 3.0, 20.0, 0.7});
  t.add({"c", 0.45, 5.0, 15.0, 0.5});
  t.add({"d", 0.75, 9.0, 10.0, 0.1});
  const MetricsSummary b1 = t.bucket(1);
  CHECK(b1.count == 2);
  CHECK(b1.l1_percent == doctest::Approx(2.0).epsilon(1e-14));
  CHECK(b1.psnr == doctest::Approx(25.0).epsilon(1e-14));
  CHECK(b1.ssim == doctest::Approx(0.8).epsilon(1e-14));
  CHECK(t.bucket(4).count == 1);
  CHECK(t.bucket(0).count == 0);
  CHECK(t.all().count == 4);
  CHECK(t.all().l1_percent == doctest::Approx(4.5).epsilon(1e-14));
  CHECK(t.outside_buckets() == 1);
  const std::string md = t.markdown();
  CHECK(md.find("| (0.1,0.2] | 2 | 25.00 | 0.800 | 2.00 |") != std::string::npos);
  CHECK(md.find("| all | 4 |") != std::string::npos);
  CHECK(md.find("(0.2,0.3]") == std::string::npos);  // empty buckets are left out of the table
  const std::string csv = t.csv();
  CHECK(csv.find("\"(0.1,0.2]\",2,25,0.8,2\n") != std::string::npos);
  CHECK(csv.find("\"(0.2,0.3]\",0,") != std::string::npos);
  CHECK(t.per_image_csv().find("\"c\",0.450000,\"(0.4,0.5]\",15,0.5,5\n") != std::string::npos);
}
