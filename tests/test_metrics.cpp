#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "core/metrics/metrics.h"

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
  t.add({"a", 0.15, 1.0, 30.0, 0.9, 0.5});
  t.add({"b", 0.18, 3.0, 20.0, 0.7, 0.25});
  t.add({"c", 0.45, 5.0, 15.0, 0.5, 2.0});
  t.add({"d", 0.75, 9.0, 10.0, 0.1, 1.0});
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
  CHECK(md.find("| (0.1,0.2] | 2 | 25.00 | 0.800 | 2.00 | 0.375 |") != std::string::npos);
  CHECK(md.find("| all | 4 | 18.75 | 0.550 | 4.50 | 0.750 |") != std::string::npos);  // median of 4
  CHECK(md.find("(0.2,0.3]") == std::string::npos);  // empty buckets are left out of the table
  const std::string csv = t.csv();
  CHECK(csv.rfind("bucket,count,psnr,ssim,l1_percent,hole_detail,hole_detail_skipped\n", 0) == 0);
  CHECK(csv.find("\"(0.1,0.2]\",2,25,0.8,2,0.375,0\n") != std::string::npos);
  CHECK(csv.find("\"(0.2,0.3]\",0,0,0,0,nan,0\n") != std::string::npos);
  CHECK(t.per_image_csv().rfind("name,hole_ratio,bucket,psnr,ssim,l1_percent,hole_detail\n", 0) == 0);
  CHECK(t.per_image_csv().find("\"c\",0.450000,\"(0.4,0.5]\",15,0.5,5,2\n") != std::string::npos);
}

// ---------------------------------------------------------------- hole detail

namespace {

// Hole detail the slow way, in double, straight from the definition in core/metrics/metrics.h: the
// region by an explicit Chebyshev-distance-2 scan, Sobel with a replicate border (which the
// region's pixels never reach), the two means divided.
double naive_hole_detail(const Tensor& result, const Tensor& truth, const MaskImage& mask) {
  const int64_t h = truth.size(1), w = truth.size(2);
  auto lum = [&](const Tensor& t, int64_t y, int64_t x) {
    y = std::clamp<int64_t>(y, 0, h - 1), x = std::clamp<int64_t>(x, 0, w - 1);
    return 0.299 * t.at({0, y, x}) + 0.587 * t.at({1, y, x}) + 0.114 * t.at({2, y, x});
  };
  auto grad = [&](const Tensor& t, int64_t y, int64_t x) {
    double gx = 0, gy = 0;
    for (int dy = -1; dy <= 1; ++dy)
      for (int dx = -1; dx <= 1; ++dx) {
        const double v = lum(t, y + dy, x + dx);
        gx += dx * (2 - std::abs(dy)) * v, gy += dy * (2 - std::abs(dx)) * v;
      }
    return std::sqrt(gx * gx + gy * gy);
  };
  double sr = 0, st = 0;
  int64_t n = 0;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      bool in = true;
      for (int64_t dy = -2; dy <= 2 && in; ++dy)
        for (int64_t dx = -2; dx <= 2 && in; ++dx) {
          const int64_t yy = y + dy, xx = x + dx;
          in = yy >= 0 && yy < h && xx >= 0 && xx < w && mask.is_hole(yy, xx);
        }
      if (!in) continue;
      sr += grad(result, y, x), st += grad(truth, y, x), ++n;
    }
  if (n == 0 || st == 0) return std::numeric_limits<double>::quiet_NaN();
  return (sr / double(n)) / (st / double(n));
}

// Every channel of `image` averaged over a (2r+1)² box, replicate border.
Tensor box_blur(const Tensor& image, int r) {
  const int64_t c = image.size(0), h = image.size(1), w = image.size(2);
  std::vector<double> out(size_t(c * h * w));
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        double s = 0;
        for (int dy = -r; dy <= r; ++dy)
          for (int dx = -r; dx <= r; ++dx)
            s += image.at({ch, std::clamp<int64_t>(y + dy, 0, h - 1), std::clamp<int64_t>(x + dx, 0, w - 1)});
        out[size_t((ch * h + y) * w + x)] = s / double((2 * r + 1) * (2 * r + 1));
      }
  return Tensor::from_vector(out, image.shape());
}

// A rectangle of holes, rows [y0, y1) and columns [x0, x1).
MaskImage rect_hole(int64_t h, int64_t w, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
  MaskImage m(h, w);
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t x = x0; x < x1; ++x) m.set_hole(y, x);
  return m;
}

}  // namespace

TEST_CASE("metrics: hole detail is 1 for the truth, below 1 for a blur, above 1 with noise") {
  const Tensor truth = random_image(3, 64, 64, 21);  // texture: independent pixels
  const MaskImage m = rect_hole(64, 64, 10, 50, 8, 40);
  CHECK(hole_detail(truth, truth, m) == 1.0);  // exactly: the same sum divided by itself
  const double blurred = hole_detail(box_blur(truth, 1), truth, m);
  // Noise of ±0.15 on a smooth truth (a blur of the texture), clamped to [0,1] as a saved image.
  const Tensor smooth = box_blur(truth, 2);
  Generator g(22);
  const Tensor noise = Tensor::rand({3, 64, 64}, g, DType::F64, Device::CPU, -0.15, 0.15);
  std::vector<double> nv = smooth.to_double_vector(), n = noise.to_double_vector();
  for (size_t i = 0; i < nv.size(); ++i) nv[i] = std::clamp(nv[i] + n[i], 0.0, 1.0);
  const double noisy = hole_detail(Tensor::from_vector(nv, smooth.shape()), smooth, m);
  MESSAGE("hole detail: 3×3 box blur of a random texture " << blurred << ", smooth truth + noise " << noisy);
  CHECK(blurred < 0.7);
  CHECK(blurred > 0.1);
  CHECK(noisy > 1.3);
  // A stronger blur keeps less.
  CHECK(hole_detail(box_blur(truth, 2), truth, m) < blurred);
}

TEST_CASE("metrics: hole detail matches the definition computed another way") {
  const std::tuple<int64_t, int64_t, uint64_t> cases[] = {{12, 12, 1}, {20, 17, 2}, {33, 40, 3}};
  int measured = 0;
  for (const auto& one : cases) {
    const int64_t h = std::get<0>(one), w = std::get<1>(one);
    const uint64_t seed = std::get<2>(one);
    const Tensor result = random_image(3, h, w, seed), truth = random_image(3, h, w, seed + 100);
    for (uint64_t k = 0; k < 4; ++k) {
      const MaskImage m = generate_mask(h, w, seed, k, {0.3, 0.6});
      const double expected = naive_hole_detail(result, truth, m), got = hole_detail(result, truth, m);
      INFO(h << "×" << w << ", mask " << k << ": " << got << " vs " << expected);
      measured += !std::isnan(expected);
      if (std::isnan(expected)) {
        CHECK(std::isnan(got));
      } else {
        CHECK(got == doctest::Approx(expected).epsilon(1e-5));  // float math against double
      }
    }
  }
  CHECK(measured >= 6);  // most masks leave a region: the comparison is not all NaN == NaN
}

TEST_CASE("metrics: hole detail by hand on 12×12 ramps, and only the eroded hole counts") {
  // Truth: Y = 0.05·x (grey, and the weights sum to 1), whose Sobel gx is (1+2+1)·2·0.05 = 0.4
  // everywhere and gy 0. Hole: rows 2–9, columns 2–9; eroded by 2 px: rows and columns 4–7.
  const int64_t n = 12;
  std::vector<double> t(size_t(3 * n * n)), r(t.size());
  for (int64_t ch = 0; ch < 3; ++ch)
    for (int64_t y = 0; y < n; ++y)
      for (int64_t x = 0; x < n; ++x) {
        t[size_t((ch * n + y) * n + x)] = 0.05 * double(x);
        r[size_t((ch * n + y) * n + x)] = 0.03 * double(y);
      }
  const Tensor truth = Tensor::from_vector(t, {3, n, n});
  const MaskImage m = rect_hole(n, n, 2, 10, 2, 10);
  // A ramp in y of slope 0.03: magnitude 8·0.03 = 0.24 against 0.4.
  CHECK(hole_detail(Tensor::from_vector(r, {3, n, n}), truth, m) == doctest::Approx(0.6).epsilon(1e-6));

  // The truth with a spike of +0.2 at (5,5). At a neighbour whose offset to the spike is
  // (a,b), the spike adds b·(2−|a|)·0.2 to gx and a·(2−|b|)·0.2 to gy: magnitudes 0.8 and 0
  // beside it, √(0.4²+0.4²) above and below, √(0.6²+0.2²) and √(0.2²+0.2²) at the corners; the
  // other 7 region pixels keep 0.4. Changes the region does not see: spikes on the hole's edge
  // (rows/columns 2 and 9: an erosion by only 1 px would see them) and in the known pixels.
  auto spiked = t;
  auto add = [&](int64_t y, int64_t x, double d) {
    for (int64_t ch = 0; ch < 3; ++ch) spiked[size_t((ch * n + y) * n + x)] += d;
  };
  add(5, 5, 0.2);
  add(2, 5, 0.3), add(9, 9, 0.3), add(6, 2, 0.3), add(0, 0, 0.5), add(11, 6, 0.5);
  const double by_hand = (8 * 0.4 + 0.8 + 0.0 + 2 * std::sqrt(0.32) + 2 * std::sqrt(0.4) + 2 * std::sqrt(0.08)) /
                         (16 * 0.4);
  CHECK(hole_detail(Tensor::from_vector(spiked, {3, n, n}), truth, m) == doctest::Approx(by_hand).epsilon(1e-6));
  // A spike one pixel further in, on the hole's second row (3), reaches the region's first (4).
  auto seen = t;
  for (int64_t ch = 0; ch < 3; ++ch) seen[size_t((ch * n + 3) * n + 5)] += 0.3;
  CHECK(hole_detail(Tensor::from_vector(seen, {3, n, n}), truth, m) > 1.0);
}

TEST_CASE("metrics: hole detail is NaN without a region or without truth detail; tables skip NaNs") {
  const Tensor a = random_image(3, 16, 16, 31), b = random_image(3, 16, 16, 32);
  CHECK(std::isnan(hole_detail(a, b, MaskImage(16, 16))));                // no hole
  CHECK(std::isnan(hole_detail(a, b, rect_hole(16, 16, 3, 7, 3, 7))));    // 4×4: erodes to nothing
  CHECK(!std::isnan(hole_detail(a, b, rect_hole(16, 16, 3, 8, 3, 8))));   // 5×5: one pixel
  CHECK(std::isnan(hole_detail(a, b, rect_hole(16, 16, 0, 16, 0, 2))));   // along the border
  CHECK(std::isnan(hole_detail(a, Tensor::full({3, 16, 16}, 0.4), rect_hole(16, 16, 2, 14, 2, 14))));  // flat
  CHECK(std::isnan(hole_detail(random_image(3, 4, 4, 1), random_image(3, 4, 4, 2), MaskImage(4, 4, 0.0f))));
  CHECK_THROWS_AS(hole_detail(a, random_image(3, 16, 15, 1), MaskImage(16, 16)), Error);
  CHECK_THROWS_AS(hole_detail(a, b, MaskImage(16, 15)), Error);
  CHECK_THROWS_AS(hole_detail(random_image(2, 16, 16, 1), random_image(2, 16, 16, 2), MaskImage(16, 16)), Error);

  // evaluate_image scores the composite: the same number as the raw result, 1 for the truth.
  const MaskImage m = rect_hole(16, 16, 2, 14, 3, 13);
  CHECK(evaluate_image("x", a, b, m).hole_detail == hole_detail(a, b, m));
  CHECK(evaluate_image("x", b, b, m).hole_detail == 1.0);
  CHECK(std::isnan(evaluate_image("x", a, b, MaskImage(16, 16)).hole_detail));

  const double nan = std::numeric_limits<double>::quiet_NaN();
  MetricsTable t;
  t.add({"a", 0.15, 1, 30, 0.9, 0.2});
  t.add({"b", 0.16, 1, 30, 0.9, nan});
  t.add({"c", 0.17, 1, 30, 0.9, 0.9});
  t.add({"d", 0.18, 1, 30, 0.9, 0.4});
  t.add({"e", 0.25, 1, 30, 0.9, nan});
  t.add({"f", 0.75, 1, 30, 0.9, 5.0});  // outside the buckets: only in "all"
  CHECK(t.bucket(1).count == 4);
  CHECK(t.bucket(1).hole_detail == doctest::Approx(0.4).epsilon(1e-15));  // median of 0.2, 0.4, 0.9
  CHECK(t.bucket(1).hole_detail_skipped == 1);
  CHECK(std::isnan(t.bucket(2).hole_detail));  // its one image has none
  CHECK(t.bucket(2).hole_detail_skipped == 1);
  CHECK(std::isnan(t.bucket(0).hole_detail));  // empty
  CHECK(t.all().hole_detail == doctest::Approx(0.65).epsilon(1e-15));  // (0.4 + 0.9) / 2
  CHECK(t.all().hole_detail_skipped == 2);
  CHECK(t.markdown().find("| (0.2,0.3] | 1 | 30.00 | 0.900 | 1.00 | n/a |") != std::string::npos);
  CHECK(t.markdown().find("| all | 6 | 30.00 | 0.900 | 1.00 | 0.650 |") != std::string::npos);
  CHECK(t.csv().find("\"(0.2,0.3]\",1,30,0.9,1,nan,1\n") != std::string::npos);
  CHECK(t.csv().find("\"all\",6,30,0.9,1,0.65,2\n") != std::string::npos);
  CHECK(t.per_image_csv().find("\"b\",0.160000,\"(0.1,0.2]\",30,0.9,1,nan\n") != std::string::npos);
}
