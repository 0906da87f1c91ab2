// 2-D convolution on the CPU: im2col + GEMM (Eigen), forward and both backwards side by side.
//
// The column matrix of a block of output pixels is cols[C·kh·kw, pixels]; then
//   forward          y[K, pixels]      = W[K, C·kh·kw] · cols
//   backward-data    gcols             = Wᵀ · gy[K, pixels], scattered back by col2im
//   backward-weight  gW[K, C·kh·kw]   += gy · colsᵀ       (summed over blocks and images)
// Blocks are bands of output rows of one image, sized so cols stays in cache; when a whole
// image is smaller than that (the deep, tiny layers of the UNet) several images share one
// block so the GEMM is wide enough and W is packed once for all of them. With enough blocks
// each thread takes whole blocks; otherwise Eigen threads each GEMM. Layers with very few
// output channels (the UNet's last, K = 3, and the discriminator's score, K = 1) run direct
// kernels instead (conv_thin.cpp). With bf16 dot products on (core/cpu/dot_precision.h) the f32
// GEMMs run in gemm_bf16 instead of Eigen, on the same blocks; the direct kernels stay f32.
// There the forward and the weight gradient skip im2col: gemm_bf16 packs cols (or colsᵀ)
// straight from the image (ConvColumns), which gives the same packed bits.
#include <Eigen/Dense>
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <omp.h>
#include <optional>
#include <type_traits>
#include <vector>

#include "core/cpu/conv_thin.h"
#include "core/cpu/cpu_backend.h"
#include "core/cpu/dot_precision.h"
#include "core/cpu/gemm_bf16.h"
#include "core/cpu/machine_peak.h"

namespace pconv {

namespace {

using cpu_conv::ColumnRange;
using cpu_conv::ConvGeometry;
using cpu_conv::kThinMaxK;
using cpu_conv::valid_columns;

ConvGeometry geometry(const char* op, const Tensor& x, const Tensor& w, const Tensor& y,
                      const Conv2dParams& p) {
  if (x.dim() != 4 || w.dim() != 4 || y.dim() != 4)
    throw Error(std::string(op) + ": expected 4-d input, weight and output, got " +
                shape_str(x.shape()) + ", " + shape_str(w.shape()) + ", " + shape_str(y.shape()));
  ConvGeometry g{x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2),
                 w.size(3), y.size(2), y.size(3), p.stride, p.pad};
  const bool ok = w.size(1) == g.C && y.size(0) == g.N && y.size(1) == g.K && p.stride >= 1 &&
                  p.pad >= 0 && g.Ho == (g.H + 2 * g.pad - g.kh) / g.stride + 1 &&
                  g.Wo == (g.W + 2 * g.pad - g.kw) / g.stride + 1 && g.Ho > 0 && g.Wo > 0;
  if (!ok)
    throw Error(std::string(op) + ": inconsistent shapes: input " + shape_str(x.shape()) +
                ", weight " + shape_str(w.shape()) + ", output " + shape_str(y.shape()) +
                ", stride " + std::to_string(p.stride) + ", pad " + std::to_string(p.pad));
  return g;
}

// Bytes of cols one block aims for (tuned on the UNet's layers: smaller blocks starve the
// GEMM, larger ones fall out of cache), and the fewest pixels worth a block of its own.
constexpr int64_t kBlockBytes = int64_t(2) << 20;
constexpr int64_t kMinBlockPixels = 256;

// A block of output pixels: images [n0, n1) × output rows [oh0, oh1), either within one image
// (band `band` of it) or whole images.
struct Block {
  int64_t n0, n1, oh0, oh1, band;
};

// How a pass walks the blocks: with enough of them each thread takes whole blocks (im2col and
// a single-threaded GEMM, no synchronisation inside); otherwise blocks run in turn and each
// GEMM and im2col is threaded.
struct Plan {
  std::vector<Block> blocks;
  bool threads_take_blocks = false;
  int64_t rows = 0;  // output rows per band (single-image blocks)
};

// min_band_rows: the thinnest band allowed (backward-data needs bands of at least
// ⌈kh/s⌉ − 1 rows to scatter from several threads at once, see there).
Plan make_plan(const ConvGeometry& g, size_t elem, int64_t min_band_rows = 1) {
  Plan plan;
  const int64_t threads = omp_get_max_threads();
  const int64_t pixels = std::max(kMinBlockPixels, kBlockBytes / (g.depth() * int64_t(elem)));
  if (pixels >= g.Ho * g.Wo && !g.pointwise()) {
    const int64_t images = std::clamp<int64_t>(pixels / (g.Ho * g.Wo), 1, (g.N + threads - 1) / threads);
    for (int64_t n = 0; n < g.N; n += images)
      plan.blocks.push_back({n, std::min(g.N, n + images), 0, g.Ho, 0});
  } else {
    // Bands of rows; thinner than the budget when that gives every thread a few of them.
    const int64_t want_bands = (4 * threads + g.N - 1) / g.N;
    const int64_t min_rows = std::max((kMinBlockPixels + g.Wo - 1) / g.Wo, min_band_rows);
    plan.rows = std::clamp<int64_t>(std::min(pixels / g.Wo, (g.Ho + want_bands - 1) / want_bands),
                                    std::min(min_rows, g.Ho), g.Ho);
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t r = 0, band = 0; r < g.Ho; r += plan.rows, ++band)
        plan.blocks.push_back({n, n + 1, r, std::min(g.Ho, r + plan.rows), band});
  }
  plan.threads_take_blocks = threads > 1 && int64_t(plan.blocks.size()) >= 2 * threads;
  return plan;
}

// Runs f on the blocks that pass `keep`, spread over threads when `parallel`. (A plain loop
// otherwise: an inactive parallel region would make Eigen's own threading nested.)
template <typename Keep, typename F>
void for_each_block(const Plan& plan, bool parallel, Keep&& keep, F&& f) {
  const int64_t count = int64_t(plan.blocks.size());
  if (parallel) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < count; ++i)
      if (keep(plan.blocks[size_t(i)])) f(plan.blocks[size_t(i)]);
  } else {
    for (const Block& b : plan.blocks)
      if (keep(b)) f(b);
  }
}
constexpr auto kAllBlocks = [](const Block&) { return true; };

// Per-thread scratch that only grows: steady-state calls allocate nothing.
template <typename T>
T* scratch(int slot, int64_t count) {
  struct Buffer {
    void* data = nullptr;
    size_t bytes = 0;
    ~Buffer() { std::free(data); }
  };
  thread_local Buffer buffers[3];
  Buffer& b = buffers[slot];
  const size_t need = (size_t(count) * sizeof(T) + 63) / 64 * 64;
  if (need > b.bytes) {
    std::free(b.data);
    b.data = std::aligned_alloc(64, need);
    if (!b.data) throw Error("conv2d: out of memory for a " + std::to_string(need >> 20) + " MiB scratch buffer");
    b.bytes = need;
  }
  return static_cast<T*>(b.data);
}

// cols[r, j] for rows oh0..oh1 of one image x (C×H×W); row r of cols starts at cols + r·ld.
template <typename T>
void im2col(const T* x, const ConvGeometry& g, int64_t oh0, int64_t oh1, T* cols, int64_t ld) {
  const int64_t depth = g.depth(), kk = g.kh * g.kw;
#pragma omp parallel for schedule(static) if (depth * (oh1 - oh0) * g.Wo > 32768)
  for (int64_t r = 0; r < depth; ++r) {
    const int64_t c = r / kk, ki = (r / g.kw) % g.kh, kj = r % g.kw;
    const T* xc = x + c * g.H * g.W;
    const ColumnRange cr = valid_columns(g, kj);
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      T* d = cols + r * ld + (oh - oh0) * g.Wo;
      const int64_t ih = oh * g.stride - g.pad + ki;
      if (ih < 0 || ih >= g.H) {
        std::fill(d, d + g.Wo, T(0));
        continue;
      }
      const T* src = xc + ih * g.W + cr.in0;
      std::fill(d, d + cr.lo, T(0));
      if (g.stride == 1)
        std::copy_n(src, cr.size(), d + cr.lo);
      else
        for (int64_t i = 0; i < cr.size(); ++i) d[cr.lo + i] = src[i * g.stride];
      std::fill(d + cr.hi, d + g.Wo, T(0));
    }
  }
}

// The adjoint of im2col: gx (C×H×W of one image) += the entries of cols. Threaded over input
// channels, which own disjoint parts of gx.
template <typename T>
void col2im(const T* cols, int64_t ld, const ConvGeometry& g, int64_t oh0, int64_t oh1, T* gx) {
#pragma omp parallel for schedule(static) if (g.depth() * (oh1 - oh0) * g.Wo > 32768)
  for (int64_t c = 0; c < g.C; ++c) {
    T* gc = gx + c * g.H * g.W;
    for (int64_t ki = 0; ki < g.kh; ++ki)
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const int64_t r = (c * g.kh + ki) * g.kw + kj;
        const ColumnRange cr = valid_columns(g, kj);
        for (int64_t oh = oh0; oh < oh1; ++oh) {
          const int64_t ih = oh * g.stride - g.pad + ki;
          if (ih < 0 || ih >= g.H) continue;
          const T* s = cols + r * ld + (oh - oh0) * g.Wo + cr.lo;
          T* dst = gc + ih * g.W + cr.in0;
          if (g.stride == 1)
            for (int64_t i = 0; i < cr.size(); ++i) dst[i] += s[i];
          else
            for (int64_t i = 0; i < cr.size(); ++i) dst[i * g.stride] += s[i];
        }
      }
  }
}

template <typename T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using ConstView = Eigen::Map<const RowMajor<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using View = Eigen::Map<RowMajor<T>, 0, Eigen::OuterStride<>>;

// The input of a block as a [depth, pixels] matrix: x itself for pointwise convs, else im2col
// into scratch slot 0.
template <typename T>
ConstView<T> block_columns(const T* x, const ConvGeometry& g, const Block& b) {
  const int64_t rows = b.oh1 - b.oh0, pixels = (b.n1 - b.n0) * rows * g.Wo;
  if (g.pointwise())
    return ConstView<T>(x + b.n0 * g.C * g.H * g.W + b.oh0 * g.Wo, g.depth(), pixels,
                        Eigen::OuterStride<>(g.Ho * g.Wo));
  T* cols = scratch<T>(0, g.depth() * pixels);
  for (int64_t n = b.n0; n < b.n1; ++n)
    im2col(x + n * g.C * g.H * g.W, g, b.oh0, b.oh1, cols + (n - b.n0) * rows * g.Wo, pixels);
  return ConstView<T>(cols, g.depth(), pixels, Eigen::OuterStride<>(pixels));
}

// Where a block's K×pixels output lives: in y itself for one image, else in scratch slot 1
// (several images' pixels are not one strided matrix in NCHW).
template <typename T>
View<T> block_outputs(T* y, const ConvGeometry& g, const Block& b) {
  const int64_t pixels = (b.n1 - b.n0) * (b.oh1 - b.oh0) * g.Wo;
  if (b.n1 - b.n0 == 1)
    return View<T>(y + b.n0 * g.K * g.Ho * g.Wo + b.oh0 * g.Wo, g.K, pixels,
                   Eigen::OuterStride<>(g.Ho * g.Wo));
  return View<T>(scratch<T>(1, g.K * pixels), g.K, pixels, Eigen::OuterStride<>(pixels));
}

// Moves a multi-image block between y (N×K×Ho×Wo) and its K×pixels matrix.
template <typename T>
void scatter_outputs(const View<T>& m, T* y, const ConvGeometry& g, const Block& b) {
  const int64_t hw = g.Ho * g.Wo;
  for (int64_t n = b.n0; n < b.n1; ++n)
    for (int64_t k = 0; k < g.K; ++k)
      std::copy_n(m.data() + k * m.outerStride() + (n - b.n0) * hw, hw, y + (n * g.K + k) * hw);
}
template <typename T>
void gather_outputs(const T* y, const ConvGeometry& g, const Block& b, View<T>& m) {
  const int64_t hw = g.Ho * g.Wo;
  for (int64_t n = b.n0; n < b.n1; ++n)
    for (int64_t k = 0; k < g.K; ++k)
      std::copy_n(y + (n * g.K + k) * hw, hw, m.data() + k * m.outerStride() + (n - b.n0) * hw);
}

// ---- bf16 dot products: only for f32 (T = double never takes them), only when set, and only
// for passes with at least kMinBf16Pixels output pixels: below that (the 1×1 and 2×2 levels)
// packing W costs more than the products it speeds up (bench-conv: 0.3 → 6 ms for 512 → 512
// channels at 1×1 output), so Eigen keeps them.
constexpr int64_t kMinBf16Pixels = 64;
template <typename T>
bool bf16_dots(const ConvGeometry& g) {
  if constexpr (std::is_same_v<T, float>)
    return cpu_dot_precision() == CpuDotPrecision::BF16 && conv_pass_takes_bf16(g.K, g.N * g.Ho * g.Wo);
  return false;
}

// The weights W[K, depth] (or Wᵀ) as gemm_bf16's left operand, rounded and packed once per
// pass; empty when Eigen multiplies.
template <typename T>
std::optional<PackedBf16Lhs> bf16_weights(const T* w, const ConvGeometry& g, bool transposed) {
  if constexpr (std::is_same_v<T, float>) {
    if (bf16_dots<T>(g))
      return transposed ? PackedBf16Lhs(g.depth(), g.K, MatrixF32{w, 1, g.depth()})
                        : PackedBf16Lhs(g.K, g.depth(), MatrixF32{w, g.depth(), 1});
  }
  return std::nullopt;
}

// c = a · b for a row-major view b and c (the forward and backward-data GEMMs).
template <typename T, typename B, typename C>
void bf16_product(const PackedBf16Lhs& a, const B& b, C& c) {
  if constexpr (std::is_same_v<T, float>)
    gemm_bf16(a, b.cols(), MatrixF32{b.data(), b.outerStride(), 1}, c.data(), c.outerStride(), false);
}

// A block's cols as gemm_bf16 reads them straight from x, never written out (B = cols for the
// forward, colsᵀ for the weight gradient when transposed).
template <typename T>
ConvColumns implicit_columns(const T* x, const ConvGeometry& g, const Block& b, bool transposed) {
  if constexpr (std::is_same_v<T, float>)
    return {x + b.n0 * g.C * g.H * g.W, g.C, g.H, g.W, g.kh, g.kw, g.stride, g.pad, g.Wo,
            b.oh0, b.oh1 - b.oh0, b.n1 - b.n0, transposed};
  throw Error("conv2d: bf16 columns of a non-f32 tensor");
}

template <typename T>
void forward(const T* x, const T* w, T* y, const ConvGeometry& g) {
  if (g.K <= kThinMaxK) return cpu_conv::thin_forward(x, w, y, g);
  ConstView<T> wm(w, g.K, g.depth(), Eigen::OuterStride<>(g.depth()));
  const std::optional<PackedBf16Lhs> wb = bf16_weights(w, g, false);
  const Plan plan = make_plan(g, sizeof(T));
  for_each_block(plan, plan.threads_take_blocks, kAllBlocks, [&](const Block& b) {
    View<T> out = block_outputs(y, g, b);
    if (wb && !g.pointwise()) {  // packed from x itself: no im2col
      if constexpr (std::is_same_v<T, float>)
        gemm_bf16(*wb, implicit_columns(x, g, b, false), out.data(), out.outerStride(), false);
    } else if (wb) {
      bf16_product<T>(*wb, block_columns(x, g, b), out);
    } else {
      out.noalias() = wm * block_columns(x, g, b);
    }
    if (b.n1 - b.n0 > 1) scatter_outputs(out, y, g, b);
  });
}

// A stride-1 convolution's data gradient is itself a stride-1 convolution: gy (K channels)
// correlated with the weights transposed to C×K and turned by 180°, padded by k − 1 − pad, gives
// gx at the input's size. Where that convolution takes bf16 dot products its columns are packed
// straight from gy (as the forward's from x), so the column matrix is never written out and no
// col2im scatters it back (7 % of the bundled recipe's step). Sums are the same products in
// another order: within the f32 summation bound of the scatter's. Returns the geometry, or
// nothing when the pass keeps the GEMM + col2im route (strided, non-square, f32, few channels,
// few pixels: bench-conv, batch 4, bf16: 1.34× / 1.45× on the 128² / 256² decoder layers, 1.03×
// at 64², but 4× slower at 4×4, where the turned convolution's many output channels and few
// pixels leave its GEMM without parallel work).
constexpr int64_t kMinTurnedPixels = 16384;
template <typename T>
std::optional<ConvGeometry> backward_data_as_forward(const ConvGeometry& g) {
  if (!bf16_dots<T>(g) || g.stride != 1 || g.kh != g.kw || g.pointwise() || g.pad > g.kh - 1 ||
      g.N * g.H * g.W < kMinTurnedPixels)
    return std::nullopt;
  const ConvGeometry turned{g.N, g.K, g.Ho, g.Wo, g.C, g.kh, g.kw, g.H, g.W, 1, g.kh - 1 - g.pad};
  if (!bf16_dots<T>(turned)) return std::nullopt;  // its C ≤ 4 outputs would run the f32 direct loops
  return turned;
}

template <typename T>
void backward_data(const T* gy, const T* w, T* gx, const ConvGeometry& g) {
  if (g.K <= kThinMaxK) return cpu_conv::thin_backward_data(gy, w, gx, g);
  if (const std::optional<ConvGeometry> t = backward_data_as_forward<T>(g)) {
    const int64_t kk = g.kh * g.kw;
    std::vector<T> turned(size_t(g.K * g.depth()));  // [c][k][kk − 1 − i] = w[k][c][i]
    for (int64_t k = 0; k < g.K; ++k)
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t i = 0; i < kk; ++i) turned[size_t((c * g.K + k) * kk + kk - 1 - i)] = w[(k * g.C + c) * kk + i];
    return forward(gy, turned.data(), gx, *t);
  }
  ConstView<T> wm(w, g.K, g.depth(), Eigen::OuterStride<>(g.depth()));
  const std::optional<PackedBf16Lhs> wtb = bf16_weights(w, g, true);
  if (g.pointwise()) {  // gx[n] = Wᵀ gy[n], no scatter
    for (int64_t n = 0; n < g.N; ++n) {
      ConstView<T> gyn(gy + n * g.K * g.Ho * g.Wo, g.K, g.Ho * g.Wo, Eigen::OuterStride<>(g.Ho * g.Wo));
      View<T> gxn(gx + n * g.C * g.H * g.W, g.C, g.H * g.W, Eigen::OuterStride<>(g.H * g.W));
      if (wtb)
        bf16_product<T>(*wtb, gyn, gxn);
      else
        gxn.noalias() = wm.transpose() * gyn;
    }
    return;
  }
  std::fill(gx, gx + g.N * g.C * g.H * g.W, T(0));  // col2im accumulates; stride > k skips pixels
  // Neighbouring bands of one image scatter into kh − stride shared input rows: threads run the
  // even bands, then the odd ones, which never touch each other's rows when (rows+1)·s ≥ kh.
  // (Wide layers would otherwise get 1-row bands and scatter on one thread: 2.5× slower.)
  const Plan plan = make_plan(g, sizeof(T), (g.kh + g.stride - 1) / g.stride - 1);
  const bool parallel = plan.threads_take_blocks && (plan.rows + 1) * g.stride >= g.kh;
  for (int64_t phase = 0; phase < 2; ++phase) {
    auto in_phase = [phase](const Block& b) { return b.band % 2 == phase; };
    for_each_block(plan, parallel, in_phase, [&](const Block& b) {
      const int64_t rows = b.oh1 - b.oh0, pixels = (b.n1 - b.n0) * rows * g.Wo;
      View<T> gyb = block_outputs(const_cast<T*>(gy), g, b);
      if (b.n1 - b.n0 > 1) gather_outputs(gy, g, b, gyb);
      T* cols = scratch<T>(0, g.depth() * pixels);
      View<T> gcols(cols, g.depth(), pixels, Eigen::OuterStride<>(pixels));
      if (wtb)
        bf16_product<T>(*wtb, gyb, gcols);
      else
        gcols.noalias() = wm.transpose() * gyb;
      for (int64_t n = b.n0; n < b.n1; ++n)
        col2im(cols + (n - b.n0) * rows * g.Wo, pixels, g, b.oh0, b.oh1, gx + n * g.C * g.H * g.W);
    });
  }
}

template <typename T>
void backward_weight(const T* gy, const T* x, T* gw, const ConvGeometry& g) {
  if (g.K <= kThinMaxK) return cpu_conv::thin_backward_weight(gy, x, gw, g);
  const Plan plan = make_plan(g, sizeof(T));
  const int64_t size = g.K * g.depth();
  auto accumulate = [&](T* acc, const Block& b) {
    View<T> accm(acc, g.K, g.depth(), Eigen::OuterStride<>(g.depth()));
    View<T> gyb = block_outputs(const_cast<T*>(gy), g, b);
    if (b.n1 - b.n0 > 1) gather_outputs(gy, g, b, gyb);
    if constexpr (std::is_same_v<T, float>) {
      if (bf16_dots<T>(g) && !g.pointwise()) {  // gW += gy · colsᵀ, colsᵀ packed from x itself
        gemm_bf16(g.K, MatrixF32{gyb.data(), gyb.outerStride(), 1}, implicit_columns(x, g, b, true), acc,
                  g.depth(), true);
        return;
      }
    }
    ConstView<T> cols = block_columns(x, g, b);
    if constexpr (std::is_same_v<T, float>) {
      if (bf16_dots<T>(g)) {  // gW += gy · colsᵀ: colsᵀ is cols with the strides swapped
        gemm_bf16(g.K, g.depth(), gyb.cols(), MatrixF32{gyb.data(), gyb.outerStride(), 1},
                  MatrixF32{cols.data(), 1, cols.outerStride()}, acc, g.depth(), true);
        return;
      }
    }
    accm.noalias() += gyb * cols.transpose();
  };
  std::fill(gw, gw + size, T(0));
  if (!plan.threads_take_blocks) {
    for (const Block& b : plan.blocks) accumulate(gw, b);
    return;
  }
  // Each thread sums its blocks into its own gW, then the sums are added into gw. The block
  // to thread assignment is static: with a dynamic one the summation order, hence the last
  // bits of gw, would vary from run to run, and a resumed training would not match.
  const int64_t count = int64_t(plan.blocks.size());
  std::vector<T*> partial(size_t(omp_get_max_threads()), nullptr);
#pragma omp parallel
  {
    const int t = omp_get_thread_num();
    T* acc = t == 0 ? gw : scratch<T>(2, size);
    if (t > 0) std::fill(acc, acc + size, T(0));
    partial[size_t(t)] = acc;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < count; ++i) accumulate(acc, plan.blocks[size_t(i)]);
#pragma omp for schedule(static)
    for (int64_t j = 0; j < size; ++j)
      for (size_t p = 1; p < partial.size(); ++p)
        if (partial[p]) gw[j] += partial[p][j];
  }
}

// For the benchmarks' GF/s (core/cpu/machine_peak.h): 2·N·K·C·kh·kw·Ho·Wo per pass.
void count_flops(const ConvGeometry& g) {
  add_conv_flops(2.0 * double(g.N) * double(g.K) * double(g.depth()) * double(g.Ho) * double(g.Wo));
}

}  // namespace

bool conv_pass_takes_bf16(int64_t out_channels, int64_t output_pixels) {
  return out_channels > kThinMaxK && output_pixels >= kMinBf16Pixels;
}

void CpuBackend::conv2d_forward(const Tensor& x, const Tensor& w, Tensor& y, const Conv2dParams& p) {
  const ConvGeometry g = geometry("conv2d_forward", x, w, y, p);
  count_flops(g);
  dispatch_float("conv2d_forward", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    forward(x.data<T>(), w.data<T>(), y.data<T>(), g);
  });
}

void CpuBackend::conv2d_backward_data(const Tensor& gy, const Tensor& w, Tensor& gx,
                                      const Conv2dParams& p) {
  const ConvGeometry g = geometry("conv2d_backward_data", gx, w, gy, p);
  count_flops(g);
  dispatch_float("conv2d_backward_data", gy.dtype(), [&](auto tag) {
    using T = decltype(tag);
    backward_data(gy.data<T>(), w.data<T>(), gx.data<T>(), g);
  });
}

void CpuBackend::conv2d_backward_weight(const Tensor& gy, const Tensor& x, Tensor& gw,
                                        const Conv2dParams& p) {
  const ConvGeometry g = geometry("conv2d_backward_weight", x, gw, gy, p);
  count_flops(g);
  dispatch_float("conv2d_backward_weight", gy.dtype(), [&](auto tag) {
    using T = decltype(tag);
    backward_weight(gy.data<T>(), x.data<T>(), gw.data<T>(), g);
  });
}

}  // namespace pconv
