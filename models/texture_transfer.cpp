#include "models/texture_transfer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <string>

#include "core/autograd.h"
#include "core/ops.h"

namespace pconv {

namespace texture_detail {

std::vector<float> gaussian_blur(const std::vector<float>& planes, int64_t h, int64_t w, double sigma) {
  const int64_t r = int64_t(std::ceil(3 * sigma));
  std::vector<float> k(size_t(2 * r + 1));
  double total = 0;
  for (int64_t i = -r; i <= r; ++i) total += k[size_t(i + r)] = float(std::exp(-0.5 * double(i * i) / (sigma * sigma)));
  for (float& v : k) v = float(v / total);
  // Mirrored index (…cb|abc…), folded as often as a kernel wider than the image needs.
  auto mirror = [](int64_t i, int64_t n) {
    if (n == 1) return int64_t(0);
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
    return i;
  };
  const int64_t planes_n = int64_t(planes.size()) / (h * w);
  std::vector<float> rows(planes.size()), out(planes.size());
  for (int64_t p = 0; p < planes_n; ++p) {
    const float* src = planes.data() + p * h * w;
    float* mid = rows.data() + p * h * w;
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        float s = 0;
        for (int64_t i = -r; i <= r; ++i) s += k[size_t(i + r)] * src[y * w + mirror(x + i, w)];
        mid[y * w + x] = s;
      }
    float* dst = out.data() + p * h * w;
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        float s = 0;
        for (int64_t i = -r; i <= r; ++i) s += k[size_t(i + r)] * mid[mirror(y + i, h) * w + x];
        dst[y * w + x] = s;
      }
  }
  return out;
}

std::vector<int64_t> nearest_rows(const std::vector<float>& targets, const std::vector<float>& sources, int64_t d) {
  const int64_t n = int64_t(targets.size()) / d, m = int64_t(sources.size()) / d;
  std::vector<int64_t> best(size_t(n), 0);
  if (n == 0 || m == 0) return best;
  // ‖t − s‖² = ‖s‖² − 2 t·s + ‖t‖²: the last term is the same for every source, so the
  // nearest source minimises ‖s‖² − 2 t·s, one GEMM per block of targets. f64 products keep
  // the comparison exact enough to be a reference for itself (tests compare with loops).
  NoGradGuard no_grad;
  const Tensor s = Tensor::from_vector(std::vector<double>(sources.begin(), sources.end()), {m, d});
  std::vector<double> norms(size_t(m), 0.0);
  for (int64_t j = 0; j < m; ++j)
    for (int64_t c = 0; c < d; ++c) norms[size_t(j)] += double(sources[size_t(j * d + c)]) * sources[size_t(j * d + c)];
  const int64_t block = std::max<int64_t>(1, std::min<int64_t>(n, (int64_t(1) << 20) / m));  // ≤ 8 MiB of products
  for (int64_t b0 = 0; b0 < n; b0 += block) {
    const int64_t b1 = std::min(n, b0 + block);
    std::vector<double> t64(targets.begin() + b0 * d, targets.begin() + b1 * d);
    const Tensor dots = matmul(Tensor::from_vector(t64, {b1 - b0, d}), s, false, true);
    const double* p = dots.data<double>();
    for (int64_t i = 0; i < b1 - b0; ++i) {
      double best_d = std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < m; ++j) {
        const double v = norms[size_t(j)] - 2 * p[i * m + j];
        if (v < best_d) best_d = v, best[size_t(b0 + i)] = j;
      }
    }
  }
  return best;
}

}  // namespace texture_detail

namespace {

// Top-left corners p0, p0+step, … of patches of side `patch` in [0, n), plus the last one
// flush with the end, so the border pixels are covered too.
std::vector<int64_t> corners(int64_t n, int64_t patch, int64_t step) {
  std::vector<int64_t> c;
  if (n < patch) return c;
  for (int64_t i = 0; i + patch <= n; i += step) c.push_back(i);
  if (c.back() != n - patch) c.push_back(n - patch);
  return c;
}

}  // namespace

ImageU8 texture_transfer(const ImageU8& composite, const MaskImage& mask, const TextureTransferOptions& o) {
  const int64_t h = composite.height, w = composite.width, P = o.patch;
  if (mask.height != h || mask.width != w)
    throw Error("texture transfer: the mask is " + std::to_string(mask.width) + "×" + std::to_string(mask.height) +
                ", the image " + std::to_string(w) + "×" + std::to_string(h));
  if (!(o.sigma > 0) || P < 2 || P % 2 || o.stride < 1 || o.stride > P || o.source_stride < 1 || !(o.max_pairs >= 1) ||
      !(o.amount >= 0 && o.amount <= 4) || !(o.coherence >= 0))
    throw Error("texture transfer: bad options (sigma > 0, an even patch ≥ 2, 1 ≤ stride ≤ patch, amount in [0, 4])");
  const int64_t hw = h * w;
  std::vector<uint8_t> hole(static_cast<size_t>(hw));
  bool any_hole = false;
  for (int64_t i = 0; i < hw; ++i) any_hole |= (hole[size_t(i)] = mask.known[size_t(i)] < 0.5f) != 0;
  if (!any_hole || h < P || w < P) return composite;

  std::vector<float> planes(size_t(3 * hw));
  for (int64_t i = 0; i < hw; ++i)
    for (int64_t c = 0; c < 3; ++c) planes[size_t(c * hw + i)] = composite.rgb[size_t(3 * i + c)];
  const std::vector<float> low = texture_detail::gaussian_blur(planes, h, w, o.sigma);

  // Features: the low-pass at half resolution (2×2 means), 3·(P/2)² numbers per patch.
  const int64_t fh = h / 2, fw = w / 2, half = P / 2, d = 3 * half * half;
  std::vector<float> small(size_t(3 * fh * fw));
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < fh; ++y)
      for (int64_t x = 0; x < fw; ++x) {
        const float* l = low.data() + c * hw + 2 * y * w + 2 * x;
        small[size_t((c * fh + y) * fw + x)] = 0.25f * (l[0] + l[1] + l[w] + l[w + 1]);
      }
  auto feature = [&](int64_t y, int64_t x, float* out) {  // y, x even
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t i = 0; i < half; ++i)
        for (int64_t j = 0; j < half; ++j)
          *out++ = small[size_t((c * fh + std::min(fh - 1, y / 2 + i)) * fw + std::min(fw - 1, x / 2 + j))];
  };

  // Holes in a box [y0, y1) × [x0, x1), clipped to the image, from an integral image.
  std::vector<int64_t> holes_integral(size_t((h + 1) * (w + 1)), 0);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      holes_integral[size_t((y + 1) * (w + 1) + x + 1)] = hole[size_t(y * w + x)] +
                                                         holes_integral[size_t(y * (w + 1) + x + 1)] +
                                                         holes_integral[size_t((y + 1) * (w + 1) + x)] -
                                                         holes_integral[size_t(y * (w + 1) + x)];
  auto holes_in = [&](int64_t y0, int64_t x0, int64_t y1, int64_t x1) {
    y0 = std::max<int64_t>(y0, 0), x0 = std::max<int64_t>(x0, 0), y1 = std::min(y1, h), x1 = std::min(x1, w);
    return holes_integral[size_t(y1 * (w + 1) + x1)] - holes_integral[size_t(y0 * (w + 1) + x1)] -
           holes_integral[size_t(y1 * (w + 1) + x0)] + holes_integral[size_t(y0 * (w + 1) + x0)];
  };
  // Sources: patches whose pixels are all more than ⌈3σ⌉ from a hole (no hole in the patch grown
  // by that margin), so their high-pass is the photo's own: the blur has not mixed the fill in.
  const int64_t r = int64_t(std::ceil(3 * o.sigma));

  // Targets: every patch on the stride grid (even corners: the features' grid) touching a hole.
  const int64_t step = o.stride + o.stride % 2;
  std::vector<std::pair<int64_t, int64_t>> targets;
  for (int64_t y : corners(h, P, step))
    for (int64_t x : corners(w, P, step))
      if (holes_in(y, x, y + P, x + P) > 0) targets.push_back({y, x});
  // Sources on the finest even grid that keeps the pairs within budget.
  std::vector<std::pair<int64_t, int64_t>> sources;
  for (int64_t s = std::max<int64_t>(2, o.source_stride + o.source_stride % 2);; s += 2) {
    sources.clear();
    for (int64_t y = 0; y + P <= h; y += s)
      for (int64_t x = 0; x + P <= w; x += s)
        if (holes_in(y - r, x - r, y + P + r, x + P + r) == 0) sources.push_back({y, x});
    if (double(sources.size()) * double(targets.size()) <= o.max_pairs || sources.size() < 64) break;
  }
  if (sources.empty() || targets.empty()) return composite;

  std::vector<float> tf(targets.size() * size_t(d)), sf(sources.size() * size_t(d));
  for (size_t i = 0; i < targets.size(); ++i)
    feature(targets[i].first & ~int64_t(1), targets[i].second & ~int64_t(1), tf.data() + i * size_t(d));
  for (size_t i = 0; i < sources.size(); ++i) feature(sources[i].first, sources[i].second, sf.data() + i * size_t(d));
  std::vector<int64_t> match = texture_detail::nearest_rows(tf, sf, d);

  // Coherence (Ashikhmin 2001): where the low-pass is smooth, neighbouring targets all find the
  // same nearest source and its detail repeats every `step` pixels, a visible grid. So each
  // target, in scanline order, takes its left or upper neighbour's source shifted by their
  // offset, a continuation of the same piece of the photo, when that is within
  // (1 + coherence)² of the nearest one's squared distance.
  if (o.coherence > 0) {
    auto dist = [&](size_t t, int64_t s) {
      double v = 0;
      for (int64_t c = 0; c < d; ++c) {
        const double e = double(tf[t * size_t(d) + size_t(c)]) - double(sf[size_t(s * d + c)]);
        v += e * e;
      }
      return v;
    };
    std::vector<int64_t> source_at(size_t(hw), -1), chosen_at(size_t(hw), -1);
    for (size_t s = 0; s < sources.size(); ++s) source_at[size_t(sources[s].first * w + sources[s].second)] = int64_t(s);
    const double slack = (1 + o.coherence) * (1 + o.coherence);
    for (size_t t = 0; t < targets.size(); ++t) {
      const auto [ty, tx] = targets[t];
      double best = dist(t, match[t]);
      for (const auto& [ny, nx] : {std::pair{ty, tx - step}, std::pair{ty - step, tx}}) {
        if (ny < 0 || nx < 0) continue;
        const int64_t n = chosen_at[size_t(ny * w + nx)];
        if (n < 0) continue;
        const int64_t cy = sources[size_t(n)].first + (ty - ny), cx = sources[size_t(n)].second + (tx - nx);
        if (cy + P > h || cx + P > w) continue;
        const int64_t c = source_at[size_t(cy * w + cx)];
        if (c < 0) continue;
        const double cd = dist(t, c);
        if (cd <= slack * best + 1e-6) match[t] = c, best = cd;
      }
      chosen_at[size_t(ty * w + tx)] = match[t];
    }
  }

  // Overlap-add of the sources' high-pass with a raised-cosine window (sin² over the patch:
  // neighbours at half a patch sum to a constant, so the seams fade).
  std::vector<float> win(static_cast<size_t>(P));
  for (int64_t i = 0; i < P; ++i) win[size_t(i)] = float(std::pow(std::sin(std::numbers::pi * (double(i) + 0.5) / double(P)), 2));
  std::vector<float> acc(size_t(3 * hw), 0.0f), weight(size_t(hw), 0.0f);
  for (size_t t = 0; t < targets.size(); ++t) {
    const auto [ty, tx] = targets[t];
    const auto [sy, sx] = sources[size_t(match[t])];
    for (int64_t i = 0; i < P; ++i)
      for (int64_t j = 0; j < P; ++j) {
        const float wt = win[size_t(i)] * win[size_t(j)];
        const int64_t to = (ty + i) * w + tx + j, from = (sy + i) * w + sx + j;
        weight[size_t(to)] += wt;
        for (int64_t c = 0; c < 3; ++c)
          acc[size_t(c * hw + to)] += wt * (planes[size_t(c * hw + from)] - low[size_t(c * hw + from)]);
      }
  }
  ImageU8 out = composite;
  for (int64_t i = 0; i < hw; ++i) {
    if (!hole[size_t(i)] || weight[size_t(i)] <= 1e-6f) continue;
    for (int64_t c = 0; c < 3; ++c) {
      const float v = low[size_t(c * hw + i)] + float(o.amount) * acc[size_t(c * hw + i)] / weight[size_t(i)];
      out.rgb[size_t(3 * i + c)] = uint8_t(std::clamp(std::lround(v), 0L, 255L));
    }
  }
  return out;
}

bool is_texture_name(const std::string& name) { return name == "none" || name == "transfer"; }

void check_texture_name(const std::string& name) {
  if (!is_texture_name(name)) throw Error("texture '" + name + "': expected none or transfer");
}

ImageU8 apply_texture(const std::string& name, ImageU8 composite, const MaskImage& mask) {
  check_texture_name(name);
  if (name == "transfer") return texture_transfer(composite, mask);
  return composite;
}

}  // namespace pconv
