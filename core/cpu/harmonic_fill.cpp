// The harmonic fill on the CPU: the coarse-to-fine plane solver (core/cpu/harmonic_fill.h) and
// the backend kernel that runs it on every (n, c) plane of a batch.
#include "core/cpu/harmonic_fill.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/cpu/cpu_backend.h"

namespace pconv {

namespace {

template <typename T>
struct Plane {
  std::vector<T> values;
  std::vector<uint8_t> known;
  int64_t height = 0, width = 0;
};

// Red–black over-relaxation on the holes of one level until the largest change is below
// `tol` or `max_sweeps` sweeps. A hole pixel's target is the mean of its in-image neighbours.
//
// The hole pixels are listed once per level by colour ((x + y) mod 2), interior ones (four
// neighbours in the image) apart from those on the border, so the sweeps do no division by the
// width and no bounds tests for most pixels. A pixel reads only the other colour's values, so
// the order within a colour does not change a value: the result is what one pass over the
// image in scanline order per colour computes, bit for bit (the neighbours are summed in the
// same order: left, right, up, down).
template <typename T>
int relax(T* v, const uint8_t* known, int64_t H, int64_t W, double tol, const HarmonicFillParams& o) {
  struct Border {
    int64_t i;
    int8_t left, right, up, down;  // 1 where that neighbour is in the image
  };
  std::vector<int64_t> inner[2];
  std::vector<Border> border[2];
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      if (known[y * W + x]) continue;
      const int colour = int((x + y) & 1);
      if (x > 0 && x + 1 < W && y > 0 && y + 1 < H)
        inner[colour].push_back(y * W + x);
      else
        border[colour].push_back({y * W + x, int8_t(x > 0), int8_t(x + 1 < W), int8_t(y > 0), int8_t(y + 1 < H)});
    }
  if (inner[0].empty() && inner[1].empty() && border[0].empty() && border[1].empty()) return 0;
  const T omega = T(o.omega);
  int sweeps = 0;
  while (sweeps < o.max_sweeps) {
    ++sweeps;
    T largest = 0;
    for (int colour = 0; colour < 2; ++colour) {
      for (const int64_t i : inner[colour]) {
        T sum = 0;
        sum += v[i - 1];
        sum += v[i + 1];
        sum += v[i - W];
        sum += v[i + W];
        const T step = omega * (sum / T(4) - v[i]);
        v[i] += step;
        largest = std::max(largest, std::abs(step));
      }
      for (const Border& b : border[colour]) {
        const int64_t i = b.i;
        T sum = 0;
        if (b.left) sum += v[i - 1];
        if (b.right) sum += v[i + 1];
        if (b.up) sum += v[i - W];
        if (b.down) sum += v[i + W];
        const int count = b.left + b.right + b.up + b.down;
        if (count == 0) continue;  // a 1×1 plane
        const T step = omega * (sum / T(count) - v[i]);
        v[i] += step;
        largest = std::max(largest, std::abs(step));
      }
    }
    if (double(largest) <= tol) break;
  }
  return sweeps;
}

// Fills the holes of `p` (which has at least one known pixel) and returns the sweeps done at
// this level.
template <typename T>
int solve(Plane<T>& p, double tol, const HarmonicFillParams& o) {
  const int64_t H = p.height, W = p.width;
  if (std::all_of(p.known.begin(), p.known.end(), [](uint8_t k) { return k != 0; })) return 0;
  if (H > 1 || W > 1) {
    // The coarser level: 2×2 blocks, averaged over their known pixels.
    Plane<T> c;
    c.height = (H + 1) / 2;
    c.width = (W + 1) / 2;
    c.values.assign(size_t(c.height * c.width), T(0));
    c.known.assign(size_t(c.height * c.width), 0);
    std::vector<int> counts(size_t(c.height * c.width), 0);
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        if (p.known[size_t(y * W + x)]) {
          const size_t j = size_t((y / 2) * c.width + x / 2);
          c.values[j] += p.values[size_t(y * W + x)];
          ++counts[j];
        }
    for (size_t j = 0; j < counts.size(); ++j)
      if (counts[j]) c.values[j] /= T(counts[j]), c.known[j] = 1;
    solve(c, tol, o);
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        if (!p.known[size_t(y * W + x)]) p.values[size_t(y * W + x)] = c.values[size_t((y / 2) * c.width + x / 2)];
  }
  return relax(p.values.data(), p.known.data(), H, W, tol, o);
}

}  // namespace

template <typename T>
int harmonic_fill_plane(T* values, const uint8_t* known, int64_t height, int64_t width,
                        const HarmonicFillParams& options) {
  if (height < 1 || width < 1) return 0;
  const size_t n = size_t(height * width);
  T lo = 0, hi = 0;
  bool any = false;
  for (size_t i = 0; i < n; ++i)
    if (known[i]) {
      lo = any ? std::min(lo, values[i]) : values[i];
      hi = any ? std::max(hi, values[i]) : values[i];
      any = true;
    }
  if (!any) {
    std::fill(values, values + n, T(0));
    return 0;
  }
  Plane<T> p;
  p.height = height;
  p.width = width;
  p.values.assign(values, values + n);
  p.known.resize(n);
  for (size_t i = 0; i < n; ++i) p.known[i] = known[i] ? 1 : 0;
  // The tolerance is relative to the value range, so the fill stops at the same precision for
  // pixel values in [0, 1] and for normalised ones; a flat image (range 0) stops at once.
  const double tol = options.tolerance * std::max(double(hi - lo), 1e-12);
  const int sweeps = solve(p, tol, options);
  std::copy(p.values.begin(), p.values.end(), values);
  return sweeps;
}

template int harmonic_fill_plane<float>(float*, const uint8_t*, int64_t, int64_t, const HarmonicFillParams&);
template int harmonic_fill_plane<double>(double*, const uint8_t*, int64_t, int64_t, const HarmonicFillParams&);

// out = image, then each (n, c) plane filled with mask[n]'s holes. Planes are independent, so
// they run in parallel; each is the same serial solve as on its own (the result does not depend
// on the thread count).
void CpuBackend::harmonic_fill(const Tensor& image, const Tensor& mask, Tensor& out,
                               const HarmonicFillParams& params) {
  const int64_t N = image.size(0), C = image.size(1), plane = image.size(2) * image.size(3);
  dispatch_float("harmonic_fill", image.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* m = mask.data<T>();
    std::vector<uint8_t> known(size_t(N * plane));
    // Compared in f32, so that an f64 mask and its f32 copy mark the same pixels known.
    for (size_t i = 0; i < known.size(); ++i) known[i] = float(m[i]) >= 0.5f;
    T* o = out.data<T>();
    if (o != image.data<T>()) std::copy(image.data<T>(), image.data<T>() + N * C * plane, o);
#pragma omp parallel for schedule(dynamic)
    for (int64_t k = 0; k < N * C; ++k)
      harmonic_fill_plane(o + k * plane, known.data() + (k / C) * plane, image.size(2), image.size(3), params);
  });
}

}  // namespace pconv
