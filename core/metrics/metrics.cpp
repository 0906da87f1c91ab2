// Image quality metrics and the paper's hole-ratio table. See core/metrics/metrics.h.
#include "core/metrics/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <sstream>

#include "core/data/dataset.h"
#include "core/io/image.h"

namespace pconv {

namespace {

void check_pair(const char* op, const Tensor& a, const Tensor& b) {
  check_defined(op, "a", a);
  check_defined(op, "b", b);
  if (a.shape() != b.shape())
    throw Error(std::string(op) + ": images have different shapes " + shape_str(a.shape()) + " and " +
                shape_str(b.shape()));
  if (a.numel() == 0) throw Error(std::string(op) + ": empty images " + shape_str(a.shape()));
}

double mean_squared_error(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return s / double(a.size());
}

// Normalised Gaussian of σ 1.5 truncated at radius 5 (skimage: truncate 3.5 → 2·5+1 = 11 taps).
constexpr int kRadius = 5, kWindow = 2 * kRadius + 1;
std::array<double, kWindow> gaussian_window() {
  std::array<double, kWindow> g{};
  double sum = 0;
  for (int i = 0; i < kWindow; ++i) sum += g[size_t(i)] = std::exp(-double((i - kRadius) * (i - kRadius)) / (2 * 1.5 * 1.5));
  for (double& v : g) v /= sum;
  return g;
}

// SSIM of one H×W channel over the valid window positions, with a separable filter.
double ssim_channel(const double* x, const double* y, int64_t h, int64_t w) {
  static const std::array<double, kWindow> g = gaussian_window();
  const double c1 = 0.01 * 0.01, c2 = 0.03 * 0.03;
  const int64_t oh = h - 2 * kRadius, ow = w - 2 * kRadius;
  // Horizontal pass of x, y, x², y², xy over every row, then vertical pass at valid rows.
  std::vector<double> hx(size_t(h * ow)), hy(hx.size()), hxx(hx.size()), hyy(hx.size()), hxy(hx.size());
  for (int64_t r = 0; r < h; ++r)
    for (int64_t c = 0; c < ow; ++c) {
      double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
      for (int k = 0; k < kWindow; ++k) {
        const double a = x[r * w + c + k], b = y[r * w + c + k], wk = g[size_t(k)];
        sx += wk * a, sy += wk * b, sxx += wk * a * a, syy += wk * b * b, sxy += wk * a * b;
      }
      const size_t i = size_t(r * ow + c);
      hx[i] = sx, hy[i] = sy, hxx[i] = sxx, hyy[i] = syy, hxy[i] = sxy;
    }
  double total = 0;
  for (int64_t r = 0; r < oh; ++r)
    for (int64_t c = 0; c < ow; ++c) {
      double ux = 0, uy = 0, uxx = 0, uyy = 0, uxy = 0;
      for (int k = 0; k < kWindow; ++k) {
        const size_t i = size_t((r + k) * ow + c);
        const double wk = g[size_t(k)];
        ux += wk * hx[i], uy += wk * hy[i], uxx += wk * hxx[i], uyy += wk * hyy[i], uxy += wk * hxy[i];
      }
      const double vx = uxx - ux * ux, vy = uyy - uy * uy, vxy = uxy - ux * uy;
      total += ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
    }
  return total / double(oh * ow);
}

}  // namespace

double l1_percent(const Tensor& a, const Tensor& b) {
  check_pair("l1_percent", a, b);
  const std::vector<double> x = a.to_double_vector(), y = b.to_double_vector();
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += std::abs(x[i] - y[i]);
  return 100.0 * s / double(x.size());
}

double psnr(const Tensor& a, const Tensor& b) {
  check_pair("psnr", a, b);
  const double mse = mean_squared_error(a.to_double_vector(), b.to_double_vector());
  if (mse == 0) return std::numeric_limits<double>::infinity();
  return -10.0 * std::log10(mse);
}

double ssim(const Tensor& a, const Tensor& b) {
  check_pair("ssim", a, b);
  if (a.dim() != 3) throw Error("ssim: expected C×H×W images, got " + shape_str(a.shape()));
  const int64_t c = a.size(0), h = a.size(1), w = a.size(2);
  if (h < kWindow || w < kWindow)
    throw Error("ssim: images of " + shape_str(a.shape()) + " are smaller than the 11×11 window");
  const std::vector<double> x = a.to_double_vector(), y = b.to_double_vector();
  double s = 0;
  for (int64_t ch = 0; ch < c; ++ch) s += ssim_channel(&x[size_t(ch * h * w)], &y[size_t(ch * h * w)], h, w);
  return s / double(c);
}

Tensor composite(const Tensor& result, const Tensor& gt, const MaskImage& mask) {
  check_pair("composite", result, gt);
  if (gt.dim() != 3 || gt.size(1) != mask.height || gt.size(2) != mask.width)
    throw Error("composite: image " + shape_str(gt.shape()) + " and mask " + std::to_string(mask.height) +
                "×" + std::to_string(mask.width) + " differ in size");
  std::vector<double> out = gt.to_double_vector();
  const std::vector<double> r = result.to_double_vector();
  const size_t hw = mask.known.size();
  for (size_t i = 0; i < out.size(); ++i) {
    const double m = mask.known[i % hw];
    out[i] = m * out[i] + (1 - m) * r[i];
  }
  return Tensor::from_vector(out, gt.shape());
}

namespace {
// Y of a C×H×W image (C 3, or 1 taken as Y) as H×W floats.
std::vector<float> luminance(const Tensor& image) {
  const std::vector<float> v = image.to_float_vector();
  const size_t hw = size_t(image.size(1) * image.size(2));
  if (image.size(0) == 1) return v;
  std::vector<float> y(hw);
  for (size_t i = 0; i < hw; ++i) y[i] = 0.299f * v[i] + 0.587f * v[hw + i] + 0.114f * v[2 * hw + i];
  return y;
}

// |∇Y| at (r, c) with the 3×3 Sobel kernels; the caller keeps (r, c) off the image's edge.
float sobel_magnitude(const float* y, int64_t w, int64_t r, int64_t c) {
  const float* up = y + (r - 1) * w + c;
  const float* mid = y + r * w + c;
  const float* down = y + (r + 1) * w + c;
  const float gx = (up[1] + 2 * mid[1] + down[1]) - (up[-1] + 2 * mid[-1] + down[-1]);
  const float gy = (down[-1] + 2 * down[0] + down[1]) - (up[-1] + 2 * up[0] + up[1]);
  return std::sqrt(gx * gx + gy * gy);
}
}  // namespace

double hole_detail(const Tensor& result01, const Tensor& truth01, const MaskImage& mask) {
  check_pair("hole_detail", result01, truth01);
  if (truth01.dim() != 3 || (truth01.size(0) != 3 && truth01.size(0) != 1))
    throw Error("hole_detail: expected 3×H×W (RGB) or 1×H×W images, got " + shape_str(truth01.shape()));
  const int64_t h = truth01.size(1), w = truth01.size(2);
  if (mask.height != h || mask.width != w)
    throw Error("hole_detail: image " + shape_str(truth01.shape()) + " and mask " + std::to_string(mask.height) +
                "×" + std::to_string(mask.width) + " differ in size");
  constexpr int64_t kErode = 2, kSide = 2 * kErode + 1;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (h < kSide || w < kSide) return nan;
  // Holes counted by a summed-area table, so "all 25 of the 5×5 window are holes" is O(1).
  std::vector<int32_t> sat(size_t((h + 1) * (w + 1)), 0);
  for (int64_t r = 0; r < h; ++r)
    for (int64_t c = 0; c < w; ++c)
      sat[size_t((r + 1) * (w + 1) + c + 1)] = int32_t(mask.is_hole(r, c)) + sat[size_t(r * (w + 1) + c + 1)] +
                                               sat[size_t((r + 1) * (w + 1) + c)] - sat[size_t(r * (w + 1) + c)];
  auto holes_in_window = [&](int64_t r, int64_t c) {  // the 5×5 window centred on (r, c)
    const int64_t r0 = r - kErode, r1 = r + kErode + 1, c0 = c - kErode, c1 = c + kErode + 1;
    return sat[size_t(r1 * (w + 1) + c1)] - sat[size_t(r0 * (w + 1) + c1)] - sat[size_t(r1 * (w + 1) + c0)] +
           sat[size_t(r0 * (w + 1) + c0)];
  };
  const std::vector<float> yr = luminance(result01), yt = luminance(truth01);
  double sum_result = 0, sum_truth = 0;
  int64_t n = 0;
  for (int64_t r = kErode; r < h - kErode; ++r)
    for (int64_t c = kErode; c < w - kErode; ++c) {
      if (holes_in_window(r, c) != kSide * kSide) continue;
      sum_result += sobel_magnitude(yr.data(), w, r, c);
      sum_truth += sobel_magnitude(yt.data(), w, r, c);
      ++n;
    }
  if (n == 0 || sum_truth == 0) return nan;
  return sum_result / sum_truth;  // the counts of the two means cancel
}

ImageMetrics evaluate_image(const std::string& name, const Tensor& result, const Tensor& gt,
                            const MaskImage& mask) {
  const Tensor comp = composite(result, gt, mask);
  ImageMetrics m;
  m.name = name;
  m.hole_ratio = hole_ratio(mask);
  m.l1_percent = l1_percent(comp, gt);
  m.psnr = psnr(comp, gt);
  m.ssim = ssim(comp, gt);
  m.hole_detail = hole_detail(comp, gt, mask);
  return m;
}

// ---- files

namespace {
// Stem → path for one folder; two files of one stem make the pairing ambiguous.
std::map<std::string, std::string> by_stem(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const std::string& f : list_images(dir)) {
    auto [it, fresh] = out.emplace(file_stem(f), f);
    if (!fresh) throw Error(dir + ": two images named '" + it->first + "' (" + it->second + ", " + f + ")");
  }
  return out;
}
}  // namespace

std::vector<EvalFiles> match_eval_files(const std::string& results_dir, const std::string& gt_dir,
                                        const std::string& masks_dir) {
  const auto results = by_stem(results_dir), gts = by_stem(gt_dir), masks = by_stem(masks_dir);
  if (results.empty()) throw Error(results_dir + ": no images (jpg, jpeg, png, bmp, tga, gif, webp) in this folder");
  std::vector<EvalFiles> out;
  std::vector<std::string> no_gt, no_mask;
  for (const auto& [stem, path] : results) {
    auto g = gts.find(stem), m = masks.find(stem);
    if (g == gts.end()) no_gt.push_back(stem);
    if (m == masks.end()) no_mask.push_back(stem);
    if (g != gts.end() && m != masks.end()) out.push_back({stem, path, g->second, m->second});
  }
  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < 5; ++i) s += (i ? ", " : "") + v[i];
    return v.size() > 5 ? s + ", …" : s;
  };
  if (!no_gt.empty())
    throw Error(std::to_string(no_gt.size()) + " result(s) have no ground truth of the same name in " + gt_dir + ": " +
                list(no_gt));
  if (!no_mask.empty())
    throw Error(std::to_string(no_mask.size()) + " result(s) have no mask of the same name in " + masks_dir + ": " +
                list(no_mask));
  return out;
}

ImageMetrics evaluate_files(const EvalFiles& files, MaskHoles holes, bool* mask_had_grey, bool* mask_by_alpha) {
  const Tensor result = load_image(files.result), gt = load_image(files.gt);
  const LoadedMask mask = load_mask(files.mask, holes);
  if (mask_had_grey) *mask_had_grey = mask.had_grey_levels;
  if (mask_by_alpha) *mask_by_alpha = mask.read_by_alpha;
  auto size = [](const Tensor& t) { return std::to_string(t.size(2)) + "×" + std::to_string(t.size(1)); };
  if (result.shape() != gt.shape())
    throw Error(files.result + " is " + size(result) + " but its ground truth " + files.gt + " is " + size(gt));
  if (mask.mask.height != gt.size(1) || mask.mask.width != gt.size(2))
    throw Error(files.mask + " is " + std::to_string(mask.mask.width) + "×" + std::to_string(mask.mask.height) +
                " but its ground truth " + files.gt + " is " + size(gt));
  return evaluate_image(files.name, result, gt, mask.mask);
}

// ---- buckets

namespace {
constexpr double kEdges[kNumBuckets + 1] = {0.01, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6};
}

int hole_ratio_bucket(double ratio) {
  if (!(ratio > kEdges[0]) || ratio > kEdges[kNumBuckets]) return -1;
  for (int b = 0; b < kNumBuckets; ++b)
    if (ratio <= kEdges[b + 1]) return b;
  return -1;
}

std::string bucket_label(int bucket) {
  if (bucket < 0 || bucket >= kNumBuckets) return "other";
  char buf[32];
  std::snprintf(buf, sizeof buf, "(%g,%g]", kEdges[bucket], kEdges[bucket + 1]);
  return buf;
}

std::string hole_ratio_histogram(const std::vector<double>& ratios) {
  int64_t counts[kNumBuckets + 1] = {};
  for (double r : ratios) {
    const int b = hole_ratio_bucket(r);
    ++counts[b < 0 ? kNumBuckets : b];
  }
  int64_t most = 1;
  for (int64_t c : counts) most = std::max(most, c);
  std::ostringstream os;
  for (int b = 0; b <= kNumBuckets; ++b) {
    if (b == kNumBuckets && counts[b] == 0) break;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%-11s %6lld  ", bucket_label(b).c_str(), (long long)counts[b]);
    os << buf << std::string(size_t(40 * counts[b] / most), '#') << '\n';
  }
  return os.str();
}

void MetricsTable::add(const ImageMetrics& m) {
  images_.push_back(m);
  auto add_to = [&](Sum& s) {
    ++s.n, s.l1 += m.l1_percent, s.psnr += m.psnr, s.ssim += m.ssim;
    if (std::isnan(m.hole_detail))
      ++s.details_skipped;
    else
      s.details.push_back(m.hole_detail);
  };
  add_to(all_);
  const int b = hole_ratio_bucket(m.hole_ratio);
  if (b < 0)
    ++outside_;
  else
    add_to(buckets_[size_t(b)]);
}

MetricsSummary MetricsTable::summary(const Sum& s) {
  MetricsSummary out;
  out.count = s.n;
  if (s.n > 0) out.l1_percent = s.l1 / double(s.n), out.psnr = s.psnr / double(s.n), out.ssim = s.ssim / double(s.n);
  out.hole_detail_skipped = s.details_skipped;
  if (!s.details.empty()) {
    std::vector<double> v = s.details;
    const size_t mid = v.size() / 2;
    std::nth_element(v.begin(), v.begin() + ptrdiff_t(mid), v.end());
    out.hole_detail = v[mid];
    if (v.size() % 2 == 0)  // the lower middle value is the largest of the lower half
      out.hole_detail = 0.5 * (out.hole_detail + *std::max_element(v.begin(), v.begin() + ptrdiff_t(mid)));
  }
  return out;
}

MetricsSummary MetricsTable::bucket(int b) const {
  if (b < 0 || b >= kNumBuckets) throw Error("MetricsTable::bucket: no bucket " + std::to_string(b));
  return summary(buckets_[size_t(b)]);
}

MetricsSummary MetricsTable::all() const { return summary(all_); }

namespace {
std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}
// A hole detail: "nan" (CSV) or "n/a" (markdown) when not measurable, whatever printf's NaN is.
std::string fmt_detail(const char* f, double v, const char* nan_text) {
  return std::isnan(v) ? std::string(nan_text) : fmt(f, v);
}
}  // namespace

std::string MetricsTable::markdown() const {
  std::ostringstream os;
  os << "| hole ratio | images | PSNR (dB) | SSIM | ℓ1 (%) | hole detail |\n|---|---|---|---|---|---|\n";
  auto row = [&](const std::string& label, const MetricsSummary& s) {
    os << "| " << label << " | " << s.count << " | " << fmt("%.2f", s.psnr) << " | " << fmt("%.3f", s.ssim)
       << " | " << fmt("%.2f", s.l1_percent) << " | " << fmt_detail("%.3f", s.hole_detail, "n/a") << " |\n";
  };
  for (int b = 0; b < kNumBuckets; ++b)
    if (buckets_[size_t(b)].n > 0) row(bucket_label(b), bucket(b));
  if (outside_ > 0) os << "| other | " << outside_ << " | (outside every bucket, counted in all) | | | |\n";
  row("all", all());
  return os.str();
}

std::string MetricsTable::csv() const {
  std::ostringstream os;
  os << "bucket,count,psnr,ssim,l1_percent,hole_detail,hole_detail_skipped\n";
  auto row = [&](const std::string& label, const MetricsSummary& s) {
    os << '"' << label << "\"," << s.count << ',' << fmt("%.6g", s.psnr) << ',' << fmt("%.6g", s.ssim) << ','
       << fmt("%.6g", s.l1_percent) << ',' << fmt_detail("%.6g", s.hole_detail, "nan") << ','
       << s.hole_detail_skipped << '\n';
  };
  for (int b = 0; b < kNumBuckets; ++b) row(bucket_label(b), bucket(b));
  row("all", all());
  return os.str();
}

std::string MetricsTable::per_image_csv() const {
  std::ostringstream os;
  os << "name,hole_ratio,bucket,psnr,ssim,l1_percent,hole_detail\n";
  for (const ImageMetrics& m : images_) {
    std::string name = m.name;  // CSV-quote: double any quote
    for (size_t p = 0; (p = name.find('"', p)) != std::string::npos; p += 2) name.insert(p, 1, '"');
    os << '"' << name << "\"," << fmt("%.6f", m.hole_ratio) << ",\"" << bucket_label(hole_ratio_bucket(m.hole_ratio))
       << "\"," << fmt("%.6g", m.psnr) << ',' << fmt("%.6g", m.ssim) << ',' << fmt("%.6g", m.l1_percent) << ','
       << fmt_detail("%.6g", m.hole_detail, "nan") << '\n';
  }
  return os.str();
}

}  // namespace pconv
