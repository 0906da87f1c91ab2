// Hole masks: generator, augmentation, files. See core/data/masks.h.
#include "core/data/masks.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>


namespace pconv {

MaskImage::MaskImage(int64_t h, int64_t w, float value) : height(h), width(w) {
  if (h <= 0 || w <= 0)
    throw Error("MaskImage: size " + std::to_string(h) + "×" + std::to_string(w) + " is not positive");
  known.assign(size_t(h * w), value);
}

double hole_ratio(const MaskImage& mask) {
  if (mask.known.empty()) return 0.0;
  int64_t holes = 0;
  for (float v : mask.known) holes += v < 0.5f;
  return double(holes) / double(mask.known.size());
}

double hole_ratio(const Tensor& mask) {
  check_defined("hole_ratio", "mask", mask);
  if (mask.numel() == 0) return 0.0;
  int64_t holes = 0;
  for (double v : mask.to_double_vector()) holes += v < 0.5;
  return double(holes) / double(mask.numel());
}

Tensor mask_to_tensor(const MaskImage& mask) {
  return Tensor::from_vector(mask.known, {1, 1, mask.height, mask.width});
}

Tensor masks_to_batch(const std::vector<MaskImage>& masks) {
  if (masks.empty()) throw Error("masks_to_batch: no masks");
  const int64_t h = masks[0].height, w = masks[0].width;
  std::vector<float> all;
  all.reserve(masks.size() * size_t(h * w));
  for (const MaskImage& m : masks) {
    if (m.height != h || m.width != w)
      throw Error("masks_to_batch: mask of " + std::to_string(m.height) + "×" + std::to_string(m.width) +
                  " in a batch of " + std::to_string(h) + "×" + std::to_string(w));
    all.insert(all.end(), m.known.begin(), m.known.end());
  }
  return Tensor::from_vector(all, {int64_t(masks.size()), 1, h, w});
}

MaskImage mask_from_tensor(const Tensor& t) {
  check_defined("mask_from_tensor", "mask", t);
  const Shape& s = t.shape();
  const bool ok = (s.size() == 2) || (s.size() == 3 && s[0] == 1) ||
                  (s.size() == 4 && s[0] == 1 && s[1] == 1);
  if (!ok) throw Error("mask_from_tensor: expected H×W, 1×H×W or 1×1×H×W, got " + shape_str(s));
  MaskImage m(s[s.size() - 2], s[s.size() - 1]);
  const std::vector<double> v = t.to_double_vector();
  for (size_t i = 0; i < v.size(); ++i) m.known[i] = v[i] < 0.5 ? 0.0f : 1.0f;
  return m;
}

uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b) {
  auto splitmix = [](uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  };
  return splitmix(splitmix(splitmix(seed) ^ a) ^ (b * 0xd1b54a32d192ed03ull));
}

// ---- generator

namespace {

// Paints holes and keeps the count, so the ratio is known without rescanning.
struct Painter {
  MaskImage& mask;
  int64_t holes = 0;

  void paint(int64_t y, int64_t x) {
    if (y < 0 || x < 0 || y >= mask.height || x >= mask.width || mask.is_hole(y, x)) return;
    mask.set_hole(y, x);
    ++holes;
  }
  // Every pixel whose centre lies within the bounding box and passes `inside(px, py)`.
  template <typename Inside>
  void fill(double x0, double y0, double x1, double y1, Inside inside) {
    const int64_t xa = std::max<int64_t>(0, int64_t(std::floor(x0))),
                  xb = std::min<int64_t>(mask.width - 1, int64_t(std::ceil(x1)));
    const int64_t ya = std::max<int64_t>(0, int64_t(std::floor(y0))),
                  yb = std::min<int64_t>(mask.height - 1, int64_t(std::ceil(y1)));
    for (int64_t y = ya; y <= yb; ++y)
      for (int64_t x = xa; x <= xb; ++x)
        if (inside(double(x) + 0.5, double(y) + 0.5)) paint(y, x);
  }
};

double uniform(std::mt19937_64& rng, double a, double b) {
  return std::uniform_real_distribution<double>(a, b)(rng);
}

// A thick polyline: capsules (segment + round caps) of one width along a random walk whose
// direction turns a little at each vertex, like a brush stroke.
void draw_stroke(Painter& p, std::mt19937_64& rng, double s, double deficit) {
  double radius = uniform(rng, std::max(0.5, 0.005 * s), std::max(0.6, 0.05 * s));
  const int segments = std::uniform_int_distribution<int>(1, 6)(rng);
  double seg_len = uniform(rng, 0.05 * s, 0.3 * s);
  const double area = 2 * radius * seg_len * segments;
  if (area > deficit) {  // shorten first, then thin, so small deficits get small strokes
    seg_len *= deficit / area;
    if (seg_len < 2 * radius) {
      radius = std::max(0.5, std::sqrt(deficit / (2.0 * segments)) / 2);
      seg_len = std::max(1.0, 2 * radius);
    }
  }
  double x = uniform(rng, 0, double(p.mask.width)), y = uniform(rng, 0, double(p.mask.height));
  double angle = uniform(rng, 0, 2 * std::numbers::pi);
  for (int i = 0; i < segments; ++i) {
    angle += uniform(rng, -1.0, 1.0);
    const double nx = x + seg_len * std::cos(angle), ny = y + seg_len * std::sin(angle);
    const double dx = nx - x, dy = ny - y, len2 = std::max(1e-12, dx * dx + dy * dy), r2 = radius * radius;
    p.fill(std::min(x, nx) - radius, std::min(y, ny) - radius, std::max(x, nx) + radius,
           std::max(y, ny) + radius, [&](double px, double py) {
             const double t = std::clamp(((px - x) * dx + (py - y) * dy) / len2, 0.0, 1.0);
             const double ex = px - (x + t * dx), ey = py - (y + t * dy);
             return ex * ex + ey * ey <= r2;
           });
    x = nx, y = ny;
  }
}

void draw_ellipse(Painter& p, std::mt19937_64& rng, double s, double deficit) {
  double a = uniform(rng, 0.02 * s, 0.2 * s), b = uniform(rng, 0.02 * s, 0.2 * s);
  const double area = std::numbers::pi * a * b;
  if (area > deficit) {
    const double f = std::sqrt(deficit / area);
    a = std::max(0.5, a * f), b = std::max(0.5, b * f);
  }
  const double cx = uniform(rng, 0, double(p.mask.width)), cy = uniform(rng, 0, double(p.mask.height));
  const double th = uniform(rng, 0, std::numbers::pi), c = std::cos(th), sn = std::sin(th);
  const double r = std::max(a, b);
  p.fill(cx - r, cy - r, cx + r, cy + r, [&](double px, double py) {
    const double u = (px - cx) * c + (py - cy) * sn, v = -(px - cx) * sn + (py - cy) * c;
    return (u * u) / (a * a) + (v * v) / (b * b) <= 1.0;
  });
}

// A star-shaped blob: radius r0·(1 + Σ_k a_k sin(kθ + φ_k)) for k = 2..4, with Σ a_k < 0.75.
void draw_blob(Painter& p, std::mt19937_64& rng, double s, double deficit) {
  double r0 = uniform(rng, 0.03 * s, 0.2 * s);
  const double area = std::numbers::pi * r0 * r0;
  if (area > deficit) r0 = std::max(0.5, r0 * std::sqrt(deficit / area));
  double amp[3], phase[3];
  for (int k = 0; k < 3; ++k) amp[k] = uniform(rng, 0, 0.25), phase[k] = uniform(rng, 0, 2 * std::numbers::pi);
  const double cx = uniform(rng, 0, double(p.mask.width)), cy = uniform(rng, 0, double(p.mask.height));
  const double rmax = r0 * (1 + amp[0] + amp[1] + amp[2]);
  p.fill(cx - rmax, cy - rmax, cx + rmax, cy + rmax, [&](double px, double py) {
    const double dx = px - cx, dy = py - cy, th = std::atan2(dy, dx);
    double r = 1;
    for (int k = 0; k < 3; ++k) r += amp[k] * std::sin((k + 2) * th + phase[k]);
    return dx * dx + dy * dy <= r0 * r0 * r * r;
  });
}

}  // namespace

MaskImage generate_mask(int64_t height, int64_t width, double target_ratio, std::mt19937_64& rng) {
  if (!(target_ratio >= 0.0 && target_ratio <= 0.95))
    throw Error("generate_mask: target hole ratio " + std::to_string(target_ratio) + " is outside [0, 0.95]");
  MaskImage mask(height, width);
  Painter painter{mask};
  const double total = double(height * width), s = double(std::min(height, width));
  const int64_t target_holes = int64_t(std::ceil(target_ratio * total));
  // Each shape is sized to at most ~1.3× the remaining deficit; overlap makes it add less, so
  // the loop converges from below and stops at the first shape that reaches the target.
  for (int shape = 0; shape < 100000 && painter.holes < target_holes; ++shape) {
    const double deficit = std::max(1.0, 1.3 * double(target_holes - painter.holes));
    const double pick = uniform(rng, 0, 1);
    if (pick < 0.5)
      draw_stroke(painter, rng, s, deficit);
    else if (pick < 0.75)
      draw_ellipse(painter, rng, s, deficit);
    else
      draw_blob(painter, rng, s, deficit);
  }
  return mask;
}

MaskImage generate_mask(int64_t height, int64_t width, uint64_t seed, uint64_t index,
                   const MaskGeneratorOptions& options) {
  if (!(options.min_hole_ratio >= 0 && options.min_hole_ratio <= options.max_hole_ratio &&
        options.max_hole_ratio <= 0.95))
    throw Error("generate_mask: hole ratio range [" + std::to_string(options.min_hole_ratio) + ", " +
                std::to_string(options.max_hole_ratio) + "] is not within [0, 0.95]");
  std::mt19937_64 rng(mix_seed(seed, index, 0x6d61736b));  // "mask"
  const double target = uniform(rng, options.min_hole_ratio, options.max_hole_ratio);
  return generate_mask(height, width, target, rng);
}

// ---- augmentation

namespace {

// 1-D squared Euclidean distance transform (Felzenszwalb & Huttenlocher 2012): d[i] =
// min_j (i − j)² + f[j], with f = 0 on holes and "infinity" elsewhere.
void edt_1d(const std::vector<double>& f, std::vector<double>& d, std::vector<int64_t>& v,
            std::vector<double>& z) {
  const int64_t n = int64_t(f.size());
  const double inf = std::numeric_limits<double>::infinity();
  int64_t k = 0;
  v[0] = 0, z[0] = -inf, z[1] = inf;
  for (int64_t q = 1; q < n; ++q) {
    auto intersect = [&](int64_t p) {
      return ((f[size_t(q)] + double(q * q)) - (f[size_t(p)] + double(p * p))) / double(2 * (q - p));
    };
    // f is finite, so sv > z[0] = −∞ always holds and k never drops below 0.
    double sv = intersect(v[size_t(k)]);
    while (sv <= z[size_t(k)]) sv = intersect(v[size_t(--k)]);
    ++k;
    v[size_t(k)] = q, z[size_t(k)] = sv, z[size_t(k + 1)] = inf;
  }
  k = 0;
  for (int64_t q = 0; q < n; ++q) {
    while (z[size_t(k + 1)] < double(q)) ++k;
    const int64_t p = v[size_t(k)];
    d[size_t(q)] = double((q - p) * (q - p)) + f[size_t(p)];
  }
}

}  // namespace

MaskImage dilate_holes(const MaskImage& mask, int64_t radius) {
  if (radius <= 0) return mask;
  const int64_t h = mask.height, w = mask.width;
  // A finite stand-in for infinity keeps the parabola intersections finite.
  const double big = double(h * h + w * w) * 4 + 1;
  std::vector<double> dist(size_t(h * w));
  for (size_t i = 0; i < dist.size(); ++i) dist[i] = mask.known[i] < 0.5f ? 0.0 : big;
  const int64_t n = std::max(h, w);
  std::vector<double> f, d;
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::vector<double> z(static_cast<size_t>(n + 1));
  f.resize(size_t(h)), d.resize(size_t(h));
  for (int64_t x = 0; x < w; ++x) {
    for (int64_t y = 0; y < h; ++y) f[size_t(y)] = dist[size_t(y * w + x)];
    edt_1d(f, d, v, z);
    for (int64_t y = 0; y < h; ++y) dist[size_t(y * w + x)] = d[size_t(y)];
  }
  f.resize(size_t(w)), d.resize(size_t(w));
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) f[size_t(x)] = dist[size_t(y * w + x)];
    edt_1d(f, d, v, z);
    for (int64_t x = 0; x < w; ++x) dist[size_t(y * w + x)] = d[size_t(x)];
  }
  MaskImage out(h, w);
  const double r2 = double(radius * radius);
  for (size_t i = 0; i < dist.size(); ++i) out.known[i] = dist[i] <= r2 ? 0.0f : 1.0f;
  return out;
}

MaskImage resize_nearest(const MaskImage& mask, int64_t out_height, int64_t out_width) {
  MaskImage out(out_height, out_width);
  for (int64_t y = 0; y < out_height; ++y) {
    const int64_t sy = std::min(mask.height - 1, (2 * y + 1) * mask.height / (2 * out_height));
    for (int64_t x = 0; x < out_width; ++x) {
      const int64_t sx = std::min(mask.width - 1, (2 * x + 1) * mask.width / (2 * out_width));
      out.known[size_t(y * out_width + x)] = mask.is_hole(sy, sx) ? 0.0f : 1.0f;
    }
  }
  return out;
}

MaskImage augment_mask(const MaskImage& mask, int64_t out_height, int64_t out_width, std::mt19937_64& rng,
                  const MaskAugmentOptions& options) {
  if (mask.known.empty()) throw Error("augment_mask: empty mask");
  const int64_t h = mask.height, w = mask.width;
  const double s = double(std::min(h, w));
  const int64_t radius = std::uniform_int_distribution<int64_t>(
      0, int64_t(std::lround(std::max(0.0, options.max_dilation) * s)))(rng);
  const MaskImage dilated = dilate_holes(mask, radius);
  const double angle = uniform(rng, -1, 1) * options.max_rotation_degrees * std::numbers::pi / 180.0;
  const double tx = uniform(rng, -1, 1) * options.max_translation * double(w);
  const double ty = uniform(rng, -1, 1) * options.max_translation * double(h);
  const double crop = uniform(rng, std::clamp(options.min_crop, 0.05, 1.0), 1.0);
  const double ww = crop * double(w), wh = crop * double(h);
  const double wx0 = uniform(rng, 0, double(w) - ww), wy0 = uniform(rng, 0, double(h) - wh);
  const double c = std::cos(angle), sn = std::sin(angle), cx = double(w) / 2, cy = double(h) / 2;
  // Inverse mapping per output pixel centre: crop window → undo translation → undo rotation
  // about the centre → nearest source pixel. Nearest only, so the result stays binary.
  MaskImage out(out_height, out_width);
  for (int64_t y = 0; y < out_height; ++y)
    for (int64_t x = 0; x < out_width; ++x) {
      const double u = wx0 + (double(x) + 0.5) * ww / double(out_width) - cx - tx;
      const double v = wy0 + (double(y) + 0.5) * wh / double(out_height) - cy - ty;
      const double sx = c * u + sn * v + cx, sy = -sn * u + c * v + cy;
      const int64_t ix = int64_t(std::floor(sx)), iy = int64_t(std::floor(sy));
      const bool hole = ix >= 0 && iy >= 0 && ix < w && iy < h && dilated.is_hole(iy, ix);
      out.known[size_t(y * out_width + x)] = hole ? 0.0f : 1.0f;
    }
  return out;
}

// ---- files

MaskHoles parse_mask_holes(const std::string& s) {
  if (s == "white") return MaskHoles::White;
  if (s == "black") return MaskHoles::Black;
  throw Error("mask holes: '" + s + "' is neither 'white' nor 'black'");
}

const char* mask_holes_name(MaskHoles h) { return h == MaskHoles::White ? "white" : "black"; }

LoadedMask mask_from_image(const ImageU8& img, MaskHoles holes) {
  LoadedMask out;
  out.channels_in_file = img.channels_in_file;
  out.mask = MaskImage(img.height, img.width);
  const size_t n = size_t(img.width) * size_t(img.height);
  out.read_by_alpha = img.alpha.size() == n && std::any_of(img.alpha.begin(), img.alpha.end(),
                                                           [](uint8_t a) { return a != 255; });
  for (size_t i = 0; i < n; ++i) {
    bool hole;
    if (out.read_by_alpha) {
      const uint8_t a = img.alpha[i];
      out.had_grey_levels |= (a != 0 && a != 255);
      hole = a >= 128;  // painted
    } else {
      const uint8_t* p = &img.rgb[i * 3];
      const int sum = int(p[0]) + int(p[1]) + int(p[2]);
      for (int c = 0; c < 3; ++c) out.had_grey_levels |= (p[c] != 0 && p[c] != 255);
      const bool white = sum >= 3 * 128;
      hole = (holes == MaskHoles::White) == white;
    }
    out.mask.known[i] = hole ? 0.0f : 1.0f;
  }
  return out;
}

LoadedMask load_mask(const std::string& path, MaskHoles holes) {
  return mask_from_image(read_image_u8(path, kMaxImagePixels, ImageAlpha::Keep), holes);
}

std::string alpha_mask_note(const std::string& path) {
  return path + " has transparency: masks with alpha are read by it (painted = hole, transparent = known; "
                "--mask-holes applies to opaque masks only)";
}

void save_mask(const std::string& path, const MaskImage& mask, MaskHoles holes) {
  ImageU8 img;
  img.width = int(mask.width);
  img.height = int(mask.height);
  img.channels_in_file = 3;
  img.rgb.resize(mask.known.size() * 3);
  for (size_t i = 0; i < mask.known.size(); ++i) {
    const bool hole = mask.known[i] < 0.5f;
    const uint8_t v = (hole == (holes == MaskHoles::White)) ? 255 : 0;
    img.rgb[i * 3] = img.rgb[i * 3 + 1] = img.rgb[i * 3 + 2] = v;
  }
  save_image(path, img);
}

}  // namespace pconv
