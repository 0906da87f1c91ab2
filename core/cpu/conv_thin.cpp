// Direct convolution kernels for few output channels (core/cpu/conv_thin.h).
//
// Stride 1 (both thin layers of the texture trials) runs two register-blocked kernels:
// - a correlation for forward and backward-data: out[o, r, col] = Σ_t w[o, t] · in[i_t,
//   r − top + a_t, col − left + b_t] over taps t = (input channel, kernel row, kernel column).
//   Forward reads x with the kernel as it is; backward-data reads gy with it flipped
//   (top = kh − 1 − pad). A band of output rows first copies the input rows it reads into a
//   zero-padded buffer (in L2), so every vector load is in bounds and no tap needs a test; then
//   blocks of up to 3 outputs × 4 vectors along the row (12 accumulators) sum every tap.
// - the weight gradient: for one input channel, the image's zero-padded plane against gy,
//   K outputs × up to 8 taps (≤ 9 accumulators) summed along whole rows, then across lanes.
// Larger strides keep the plain loops (row axpys and Eigen dot products).
//
// Precision: products of the tensor's type (f32 or f64) summed in it with FMA, under
// --precision bf16 too (bf16 dot products are the GEMM path's only). Forward and
// backward-data add the taps in the order the plain loops did, so they give the same values
// (a zero tap adds ±0); the weight gradient sums in 8 lanes, so its last bits differ.
#include "core/cpu/conv_thin.h"

#include <Eigen/Dense>
#include <omp.h>

#include <cstring>
#include <vector>

namespace pconv::cpu_conv {

namespace {

// ---- 8 f32 or 4 f64 lanes (AVX2) as GCC/clang vector types, so one kernel serves both.
template <typename T>
struct Lanes {
  using V [[gnu::vector_size(32)]] = T;
  static constexpr int64_t count = 32 / int64_t(sizeof(T));
};
template <typename T>
using Vec = typename Lanes<T>::V;

template <typename T>
Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
// x in every lane (x − 0 is x for every x, −0 included).
template <typename T>
Vec<T> splat(T x) {
  return x - Vec<T>{};
}

// The register-blocked loops below must unroll completely, or their sums go to memory.
#define PCONV_UNROLL _Pragma("GCC unroll 16")

// Per-thread buffers that only grow.
template <typename T>
T* thread_buffer(int slot, int64_t count) {
  thread_local std::vector<T> buffers[2];
  std::vector<T>& b = buffers[slot];
  if (int64_t(b.size()) < count) b.resize(size_t(count));
  return b.data();
}

// dst[0, width) = row `r` of an H×W plane read from column −left on, zero outside the plane.
template <typename T>
void padded_row(const T* plane, int64_t H, int64_t W, int64_t r, int64_t left, int64_t width, T* dst) {
  if (r < 0 || r >= H) {
    std::fill_n(dst, width, T(0));
    return;
  }
  const int64_t lo = std::clamp<int64_t>(left, 0, width), hi = std::clamp<int64_t>(W + left, lo, width);
  std::fill(dst, dst + lo, T(0));
  std::copy(plane + r * W + (lo - left), plane + r * W + (hi - left), dst + lo);
  std::fill(dst + hi, dst + width, T(0));
}

// ---- the correlation (forward, backward-data)

struct Tap {
  int64_t channel, row, col;  // input channel, and the offset inside the kernel window
};

template <typename T>
struct Correlation {
  const T* in;
  int64_t I, Hi, Wi;  // N images of I planes
  T* out;
  int64_t O, Ho, Wo;
  int64_t N, kh, kw, top, left;  // input row of output row r and window row a: r − top + a
  std::vector<Tap> taps;         // in summation order
  std::vector<T> weights;        // [o][t]
};

// OB output planes × RB rows × U vectors at one place: out[o] + r·out_stride + u·L + lane =
// Σ_t weights[t·OB + o] · in[taps[t] + r·in_stride + u·L + lane]; `cols` of each row are kept.
template <typename T, int OB, int RB, int U>
void correlate_block(const T* in, int64_t in_stride, const int64_t* taps, int64_t count, const T* weights,
                     T* const* out, int64_t out_stride, int64_t cols) {
  constexpr int64_t L = Lanes<T>::count;
  Vec<T> acc[OB][RB][U] = {};
  for (int64_t t = 0; t < count; ++t) {
    const T* src = in + taps[t];
    Vec<T> w[OB];
    PCONV_UNROLL
    for (int o = 0; o < OB; ++o) w[o] = splat(weights[t * OB + o]);
    PCONV_UNROLL
    for (int r = 0; r < RB; ++r)
      PCONV_UNROLL
      for (int u = 0; u < U; ++u) {
        const Vec<T> v = load(src + r * in_stride + u * L);
        PCONV_UNROLL
        for (int o = 0; o < OB; ++o) acc[o][r][u] += w[o] * v;
      }
  }
  if (cols >= U * L) {  // whole vectors
    PCONV_UNROLL
    for (int o = 0; o < OB; ++o)
      if (out[o])
        PCONV_UNROLL
        for (int r = 0; r < RB; ++r)
          PCONV_UNROLL
          for (int u = 0; u < U; ++u) std::memcpy(out[o] + r * out_stride + u * L, &acc[o][r][u], sizeof(Vec<T>));
    return;
  }
  T row[U * L];  // the ragged end of a row: its first `cols` entries
  PCONV_UNROLL
  for (int o = 0; o < OB; ++o)
    if (out[o])
      PCONV_UNROLL
      for (int r = 0; r < RB; ++r) {
        PCONV_UNROLL
        for (int u = 0; u < U; ++u) std::memcpy(row + u * L, &acc[o][r][u], sizeof(Vec<T>));
        std::copy_n(row, cols, out[o] + r * out_stride);
      }
}

template <typename T>
using BlockKernel = void (*)(const T*, int64_t, const int64_t*, int64_t, const T*, T* const*, int64_t, int64_t);

template <typename T, int OB, int RB>
BlockKernel<T> block_kernel(int64_t vectors) {
  switch (vectors) {
    case 1: return correlate_block<T, OB, RB, 1>;
    case 2: return correlate_block<T, OB, RB, 2>;
    case 3: return correlate_block<T, OB, RB, 3>;
    default: return correlate_block<T, OB, RB, 4>;
  }
}
template <typename T>
BlockKernel<T> block_kernel(int outputs, int rows, int64_t vectors) {
  if (outputs == 1) return rows == 3 ? block_kernel<T, 1, 3>(vectors) : block_kernel<T, 1, 1>(vectors);
  return outputs == 2 ? block_kernel<T, 2, 1>(vectors) : block_kernel<T, 3, 1>(vectors);
}

// Bytes of zero-padded input a band of output rows copies: stays in L2.
constexpr int64_t kBandBytes = int64_t(512) << 10;

template <typename T>
void correlate(const Correlation<T>& c) {
  constexpr int64_t L = Lanes<T>::count;
  // Padded rows hold whole vectors of outputs plus the window: every load is in bounds.
  const int64_t width = (c.Wo + L - 1) / L * L + c.kw - 1;
  // Blocks of 3 outputs (2 when there are 4); a single output takes 3 rows instead, so that a
  // block has 8–12 independent sums: at least an FMA's latency × its throughput.
  const int outputs = c.O == 4 ? 2 : int(std::min<int64_t>(c.O, 3)), rows = outputs == 1 ? 3 : 1;
  const int64_t groups = (c.O + outputs - 1) / outputs, count = int64_t(c.taps.size());
  std::vector<T> packed(size_t(groups * count * outputs), T(0));  // [group][t][output]; zero past O
  for (int64_t o = 0; o < c.O; ++o)
    for (int64_t t = 0; t < count; ++t)
      packed[size_t(((o / outputs) * count + t) * outputs + o % outputs)] = c.weights[size_t(o * count + t)];
  // Bands: as many rows as fit kBandBytes, fewer when that gives each thread two of them.
  const int64_t threads = omp_get_max_threads(), want_bands = (2 * threads + c.N - 1) / c.N;
  int64_t band = kBandBytes / (c.I * width * int64_t(sizeof(T))) - (c.kh - 1);
  band = std::min(band, (c.Ho + want_bands - 1) / want_bands) / rows * rows;
  band = std::min(std::max<int64_t>(band, rows), c.Ho);
  const int64_t bands = (c.Ho + band - 1) / band, plane = (band + c.kh - 1) * width;
  std::vector<int64_t> offsets(static_cast<size_t>(count));
  for (int64_t t = 0; t < count; ++t)
    offsets[size_t(t)] = c.taps[size_t(t)].channel * plane + c.taps[size_t(t)].row * width + c.taps[size_t(t)].col;
#pragma omp parallel for schedule(static)
  for (int64_t task = 0; task < c.N * bands; ++task) {
    const int64_t n = task / bands, r0 = task % bands * band, r1 = std::min(c.Ho, r0 + band);
    T* buffer = thread_buffer<T>(0, c.I * plane);
    for (int64_t i = 0; i < c.I; ++i)
      for (int64_t r = 0; r < r1 - r0 + c.kh - 1; ++r)
        padded_row(c.in + (n * c.I + i) * c.Hi * c.Wi, c.Hi, c.Wi, r0 - c.top + r, c.left, width,
                   buffer + i * plane + r * width);
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t r = r0; r < r1;) {
        const int block_rows = r + rows <= r1 ? rows : 1;
        for (int64_t col = 0; col < c.Wo; col += 4 * L) {
          T* out[3] = {nullptr, nullptr, nullptr};
          for (int o = 0; o < outputs && g * outputs + o < c.O; ++o)
            out[o] = c.out + ((n * c.O + g * outputs + o) * c.Ho + r) * c.Wo + col;
          const int64_t vectors = std::min<int64_t>(4, (c.Wo - col + L - 1) / L);
          block_kernel<T>(outputs, block_rows, vectors)(buffer + (r - r0) * width + col, width, offsets.data(),
                                                        count, packed.data() + g * count * outputs, out, c.Wo,
                                                        c.Wo - col);
        }
        r += block_rows;
      }
  }
}

// ---- the weight gradient

// acc[k][q] (in `sums`, K·Q vectors) += Σ over `rows` rows and `vectors` vectors along them of
// gy[k] · in shifted by offsets[q].
template <typename T, int K, int Q>
void weight_block(const T* in, int64_t in_stride, const T* gy, int64_t gy_plane, int64_t gy_stride, int64_t rows,
                  int64_t vectors, const int64_t* offsets, T* sums) {
  constexpr int64_t L = Lanes<T>::count;
  Vec<T> acc[K][Q];
  PCONV_UNROLL
  for (int k = 0; k < K; ++k)
    PCONV_UNROLL
    for (int q = 0; q < Q; ++q) acc[k][q] = load(sums + (k * Q + q) * L);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t v = 0; v < vectors; ++v) {
      Vec<T> g[K];
      PCONV_UNROLL
      for (int k = 0; k < K; ++k) g[k] = load(gy + k * gy_plane + r * gy_stride + v * L);
      PCONV_UNROLL
      for (int q = 0; q < Q; ++q) {
        const Vec<T> x = load(in + r * in_stride + v * L + offsets[q]);
        PCONV_UNROLL
        for (int k = 0; k < K; ++k) acc[k][q] += g[k] * x;
      }
    }
  PCONV_UNROLL
  for (int k = 0; k < K; ++k)
    PCONV_UNROLL
    for (int q = 0; q < Q; ++q) std::memcpy(sums + (k * Q + q) * L, &acc[k][q], sizeof(Vec<T>));
}

// Taps per block for K outputs: K·Q ≤ 9 sums, so gy's K vectors and a shifted input fit too.
constexpr int kTapsPerBlock[kThinMaxK + 1] = {0, 8, 4, 3, 2};

template <typename T>
using WeightKernel = void (*)(const T*, int64_t, const T*, int64_t, int64_t, int64_t, int64_t, const int64_t*, T*);
template <typename T>
WeightKernel<T> weight_kernel(int64_t K) {
  switch (K) {
    case 1: return weight_block<T, 1, kTapsPerBlock[1]>;
    case 2: return weight_block<T, 2, kTapsPerBlock[2]>;
    case 3: return weight_block<T, 3, kTapsPerBlock[3]>;
    default: return weight_block<T, 4, kTapsPerBlock[4]>;
  }
}

// Output rows per sweep: gy's and the input's rows of a sweep stay in L1 while every block of
// taps passes over them.
constexpr int64_t kWeightRows = 16;

template <typename T>
void weight_gradient(const T* gy, const T* x, T* gw, const ConvGeometry& g) {
  constexpr int64_t L = Lanes<T>::count;
  const int64_t wide = (g.Wo + L - 1) / L * L, width = wide + g.kw - 1, height = g.Ho + g.kh - 1;
  // gy's rows as whole vectors, zero past Wo: in place when Wo is a multiple of the lanes.
  const T* grad = gy;
  int64_t grad_stride = g.Wo;
  std::vector<T> padded;
  if (wide != g.Wo) {
    padded.assign(size_t(g.N * g.K * g.Ho * wide), T(0));
    for (int64_t row = 0; row < g.N * g.K * g.Ho; ++row)
      std::copy_n(gy + row * g.Wo, g.Wo, padded.data() + row * wide);
    grad = padded.data();
    grad_stride = wide;
  }
  const int64_t grad_plane = g.Ho * grad_stride, taps = g.kh * g.kw, per_block = kTapsPerBlock[g.K];
  const int64_t blocks = (taps + per_block - 1) / per_block, sums_size = blocks * g.K * per_block * L;
  std::vector<int64_t> offsets(size_t(blocks * per_block), 0);  // past the last tap: sums dropped
  for (int64_t t = 0; t < taps; ++t) offsets[size_t(t)] = t / g.kw * width + t % g.kw;
  const WeightKernel<T> kernel = weight_kernel<T>(g.K);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t c = 0; c < g.C; ++c) {
    T* plane = thread_buffer<T>(0, height * width);
    T* sums = thread_buffer<T>(1, sums_size);  // [block][k][q][lane]
    std::fill_n(sums, sums_size, T(0));
    for (int64_t n = 0; n < g.N; ++n) {
      for (int64_t r = 0; r < height; ++r)
        padded_row(x + (n * g.C + c) * g.H * g.W, g.H, g.W, r - g.pad, g.pad, width, plane + r * width);
      for (int64_t r0 = 0; r0 < g.Ho; r0 += kWeightRows)
        for (int64_t b = 0; b < blocks; ++b)
          kernel(plane + r0 * width, width, grad + n * g.K * grad_plane + r0 * grad_stride, grad_plane, grad_stride,
                 std::min(kWeightRows, g.Ho - r0), wide / L, offsets.data() + b * per_block,
                 sums + b * g.K * per_block * L);
    }
    for (int64_t k = 0; k < g.K; ++k)
      for (int64_t t = 0; t < taps; ++t) {
        const T* lanes = sums + ((t / per_block * g.K + k) * per_block + t % per_block) * L;
        T s = 0;
        for (int64_t l = 0; l < L; ++l) s += lanes[l];
        gw[(k * g.C + c) * taps + t] = s;
      }
  }
}

// ---- strides > 1: plain loops

// y[n, :, oh, :] += w[:, c, ki, kj] · x[n, c, oh·s − p + ki, · s − p + kj], one output row
// per iteration.
template <typename T>
void forward_strided(const T* x, const T* w, T* y, const ConvGeometry& g) {
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < g.N * g.Ho; ++row) {
    const int64_t n = row / g.Ho, oh = row % g.Ho;
    T* yrow = y + n * g.K * g.Ho * g.Wo + oh * g.Wo;  // channel k at yrow + k·Ho·Wo
    for (int64_t k = 0; k < g.K; ++k) std::fill_n(yrow + k * g.Ho * g.Wo, g.Wo, T(0));
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t ki = 0; ki < g.kh; ++ki) {
        const int64_t ih = oh * g.stride - g.pad + ki;
        if (ih < 0 || ih >= g.H) continue;
        const T* xrow = x + ((n * g.C + c) * g.H + ih) * g.W;
        for (int64_t kj = 0; kj < g.kw; ++kj) {
          const ColumnRange cr = valid_columns(g, kj);
          const T* src = xrow + cr.in0;
          for (int64_t k = 0; k < g.K; ++k) {
            const T wv = w[((k * g.C + c) * g.kh + ki) * g.kw + kj];
            T* dst = yrow + k * g.Ho * g.Wo + cr.lo;
            for (int64_t i = 0; i < cr.size(); ++i) dst[i] += wv * src[i * g.stride];
          }
        }
      }
  }
}

// gx[n, c, ih, :] gathers every output row that read input row ih: one (image, input row)
// per iteration, so no two threads write the same row.
template <typename T>
void backward_data_strided(const T* gy, const T* w, T* gx, const ConvGeometry& g) {
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < g.N * g.H; ++row) {
    const int64_t n = row / g.H, ih = row % g.H;
    for (int64_t c = 0; c < g.C; ++c) {
      T* gxrow = gx + ((n * g.C + c) * g.H + ih) * g.W;
      std::fill_n(gxrow, g.W, T(0));
      for (int64_t ki = 0; ki < g.kh; ++ki) {
        const int64_t t = ih + g.pad - ki;  // = oh·s
        if (t < 0 || t % g.stride != 0 || t / g.stride >= g.Ho) continue;
        const int64_t oh = t / g.stride;
        for (int64_t kj = 0; kj < g.kw; ++kj) {
          const ColumnRange cr = valid_columns(g, kj);
          T* dst = gxrow + cr.in0;
          for (int64_t k = 0; k < g.K; ++k) {
            const T wv = w[((k * g.C + c) * g.kh + ki) * g.kw + kj];
            const T* src = gy + ((n * g.K + k) * g.Ho + oh) * g.Wo + cr.lo;
            for (int64_t i = 0; i < cr.size(); ++i) dst[i * g.stride] += wv * src[i];
          }
        }
      }
    }
  }
}

// gw[k, c, ki, kj] = Σ_{n, oh} ⟨gy row (n, k, oh), the input row it read, shifted by kj⟩; one
// input channel per iteration owns gw[:, c].
template <typename T>
void backward_weight_strided(const T* gy, const T* x, T* gw, const ConvGeometry& g) {
  using Row = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>, 0, Eigen::InnerStride<>>;
  using Vector = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t c = 0; c < g.C; ++c) {
    std::vector<T> acc(size_t(g.K * g.kh * g.kw), T(0));  // [k][ki][kj]
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t oh = 0; oh < g.Ho; ++oh)
        for (int64_t ki = 0; ki < g.kh; ++ki) {
          const int64_t ih = oh * g.stride - g.pad + ki;
          if (ih < 0 || ih >= g.H) continue;
          const T* xrow = x + ((n * g.C + c) * g.H + ih) * g.W;
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            const ColumnRange cr = valid_columns(g, kj);
            if (cr.size() <= 0) continue;
            for (int64_t k = 0; k < g.K; ++k) {
              const T* grow = gy + ((n * g.K + k) * g.Ho + oh) * g.Wo + cr.lo;
              acc[size_t((k * g.kh + ki) * g.kw + kj)] +=
                  Vector(grow, cr.size()).dot(Row(xrow + cr.in0, cr.size(), Eigen::InnerStride<>(g.stride)));
            }
          }
        }
    for (int64_t k = 0; k < g.K; ++k)
      for (int64_t t = 0; t < g.kh * g.kw; ++t)
        gw[(k * g.C + c) * g.kh * g.kw + t] = acc[size_t(k * g.kh * g.kw + t)];
  }
}

}  // namespace

template <typename T>
void thin_forward(const T* x, const T* w, T* y, const ConvGeometry& g) {
  if (g.stride != 1) return forward_strided(x, w, y, g);
  Correlation<T> c{x, g.C, g.H, g.W, y, g.K, g.Ho, g.Wo, g.N, g.kh, g.kw, g.pad, g.pad, {}, {}};
  for (int64_t ch = 0; ch < g.C; ++ch)  // the order of the plain loops: channel, row, column
    for (int64_t ki = 0; ki < g.kh; ++ki)
      for (int64_t kj = 0; kj < g.kw; ++kj) c.taps.push_back({ch, ki, kj});
  c.weights.assign(w, w + g.K * g.depth());  // [k][c][ki][kj] is [o][t]
  correlate(c);
}

template <typename T>
void thin_backward_data(const T* gy, const T* w, T* gx, const ConvGeometry& g) {
  if (g.stride != 1) return backward_data_strided(gy, w, gx, g);
  // gx[c, ih, iw] = Σ w[k, c, ki, kj] · gy[k, ih + pad − ki, iw + pad − kj]: window row
  // a = kh − 1 − ki of gy read from row ih − (kh − 1 − pad).
  Correlation<T> c{gy, g.K, g.Ho, g.Wo, gx, g.C, g.H, g.W, g.N, g.kh, g.kw, g.kh - 1 - g.pad, g.kw - 1 - g.pad,
                   {}, {}};
  for (int64_t ki = 0; ki < g.kh; ++ki)  // the order of the plain loops: row, column, output channel
    for (int64_t kj = 0; kj < g.kw; ++kj)
      for (int64_t k = 0; k < g.K; ++k) c.taps.push_back({k, g.kh - 1 - ki, g.kw - 1 - kj});
  c.weights.resize(size_t(g.C * g.K * g.kh * g.kw));
  for (int64_t ch = 0; ch < g.C; ++ch)
    for (size_t t = 0; t < c.taps.size(); ++t) {
      const Tap& tap = c.taps[t];
      c.weights[size_t(ch) * c.taps.size() + t] =
          w[((tap.channel * g.C + ch) * g.kh + (g.kh - 1 - tap.row)) * g.kw + (g.kw - 1 - tap.col)];
    }
  correlate(c);
}

template <typename T>
void thin_backward_weight(const T* gy, const T* x, T* gw, const ConvGeometry& g) {
  if (g.stride != 1) return backward_weight_strided(gy, x, gw, g);
  weight_gradient(gy, x, gw, g);
}

template void thin_forward(const float*, const float*, float*, const ConvGeometry&);
template void thin_forward(const double*, const double*, double*, const ConvGeometry&);
template void thin_backward_data(const float*, const float*, float*, const ConvGeometry&);
template void thin_backward_data(const double*, const double*, double*, const ConvGeometry&);
template void thin_backward_weight(const float*, const float*, float*, const ConvGeometry&);
template void thin_backward_weight(const double*, const double*, double*, const ConvGeometry&);

}  // namespace pconv::cpu_conv
