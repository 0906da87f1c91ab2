// bf16 GEMM for the CPU's convolutions: VDPBF16PS with f32 accumulation (--precision bf16).
//
// VDPBF16PS takes 32 bf16 pairs and adds each pair's two products to one of 16 f32 lanes:
//   c[j] += a[2j]·b[2j] + a[2j+1]·b[2j+1],
// twice the multiply-adds of an f32 FMA per instruction. So both operands are packed with
// the contraction index k in pairs, as 32-bit words (low half k = 2p, high half 2p + 1):
//   A in panels of kRows rows: word [p·kRows + r] = (A[i0+r, 2p], A[i0+r, 2p+1]), broadcast
//     to all lanes by the kernel;
//   B in panels of kCols columns: word [p·kCols + c] = (B[2p, j0+c], B[2p+1, j0+c]).
// The kernel keeps a kRows × kCols tile of C in 16 registers (8 rows × 2 vectors). The
// contraction is cut in blocks of kDepth: all of B's block is packed first, then each A panel
// (kDepth/2 · kRows words, 4 KiB) stays in L1 while B's panels stream past it.
//
// Everything that executes AVX-512 carries PCONV_BF16_TARGET instead of the file being built
// with -mavx512*: the rest of this file and the library stay AVX2, and inline functions from
// shared headers are never emitted here with AVX-512 in them.
#include "core/cpu/gemm_bf16.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "core/cpu/dot_precision.h"
#include "core/dtype.h"

// GCC 12 warns that _mm512_undefined_*()'s deliberately uninitialised value "may be used
// uninitialized" wherever an intrinsic that uses it is inlined: a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define PCONV_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

namespace pconv {

namespace {

constexpr int64_t kRows = 8, kCols = 32, kDepth = 256, kPairs = kDepth / 2;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The first `count` of 16 lanes (none when count ≤ 0).
__mmask16 first_lanes(int64_t count) {
  return count >= 16 ? __mmask16(0xFFFF) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1);
}

// Two f32 vectors (k even, k odd) → 16 words of bf16 pairs, rounded as bf16_bits does.
PCONV_BF16_TARGET inline __m512i bf16_pairs(__m512 even, __m512 odd) {
  const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(even));
  const __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(odd));
  return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

// Where panel ip of depth block kb starts in PackedBf16Lhs::words.
int64_t lhs_offset(int64_t row_panels, int64_t kb, int64_t ip) { return (kb * row_panels + ip) * kRows * kPairs; }

// A's rows [i0, i0 + 16) (two panels) × depth [k0, k0 + 2·pairs) → panel words; zero outside A.
PCONV_BF16_TARGET void pack_lhs_panels(const MatrixF32& a, int64_t m, int64_t k, int64_t i0, int64_t k0,
                                       int64_t pairs, uint32_t* first, uint32_t* second) {
  alignas(64) uint32_t words[16][16];  // [row][pair] when rows are contiguous along k
  if (a.row_stride == 1) {  // columns contiguous (a transposed weight): 16 rows of one pair per load
    const __mmask16 rows = first_lanes(m - i0);
    for (int64_t p = 0; p < pairs; ++p) {
      const int64_t ke = k0 + 2 * p;
      const __m512 even = _mm512_maskz_loadu_ps(rows, a.data + ke * a.col_stride + i0);
      const __m512 odd = ke + 1 < k ? _mm512_maskz_loadu_ps(rows, a.data + (ke + 1) * a.col_stride + i0)
                                    : _mm512_setzero_ps();
      const __m512i w = bf16_pairs(even, odd);
      _mm256_storeu_si256((__m256i*)(first + p * kRows), _mm512_castsi512_si256(w));
      if (second) _mm256_storeu_si256((__m256i*)(second + p * kRows), _mm512_extracti64x4_epi64(w, 1));
    }
    return;
  }
  for (int64_t r = 0; r < 16; ++r) {
    const int64_t i = i0 + r;
    uint32_t* panel = r < kRows ? first : second;
    if (!panel) break;
    for (int64_t p0 = 0; p0 < pairs; p0 += 16) {
      const int64_t count = std::min<int64_t>(16, pairs - p0);  // pairs of this step
      if (i >= m) {
        std::fill_n(words[r], 16, 0u);
      } else if (a.col_stride == 1) {  // rows contiguous: 32 values of k are 16 pairs in order
        const int64_t values = std::min(2 * count, k - (k0 + 2 * p0));
        const float* src = a.data + i * a.row_stride + k0 + 2 * p0;
        const __m512 lo = _mm512_maskz_loadu_ps(first_lanes(values), src);
        const __m512 hi = _mm512_maskz_loadu_ps(first_lanes(values - 16), src + 16);
        _mm512_store_si512(words[r], (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
      } else {
        for (int64_t q = 0; q < count; ++q) {
          const int64_t ke = k0 + 2 * (p0 + q);
          const uint32_t lo = bf16_bits(a.data[i * a.row_stride + ke * a.col_stride]);
          const uint32_t hi = ke + 1 < k ? bf16_bits(a.data[i * a.row_stride + (ke + 1) * a.col_stride]) : 0;
          words[r][q] = lo | hi << 16;
        }
      }
      for (int64_t q = 0; q < count; ++q) panel[(p0 + q) * kRows + r % kRows] = words[r][q];
    }
  }
}

// Transposes 16×16 32-bit words in registers: lane j of r[i] goes to lane i of r[j].
PCONV_BF16_TARGET inline void transpose_16x16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {  // 2×2 blocks of words
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // 4×4 blocks within each 128-bit lane
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int h = 0; h < 16; h += 8)  // then the 128-bit lanes themselves
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0xdd);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
  }
}

// pack_rhs_panel for B with contiguous columns (backward-weight's colsᵀ, rows of cols a
// whole band apart). Each column's 32 values of k load as two vectors and convert to its 16
// pair-words in order (as A's contiguous rows do); 16 columns × 16 pairs are then transposed
// in registers into the panel's order. Every cache line of B is read once, whole. (Gathering
// one pair per column instead revisited each line 8 times, and with a band's power-of-two
// stride all 32 columns fell into one L1 set: perf put that packing above the GEMM itself.)
PCONV_BF16_TARGET void pack_rhs_panel_transposed(const MatrixF32& b, int64_t k, int64_t cols, int64_t k0,
                                                 int64_t j0, int64_t pairs, uint32_t* panel) {
  __m512i words[16];
  for (int64_t p0 = 0; p0 < pairs; p0 += 16) {
    const int64_t values = std::min<int64_t>(32, k - (k0 + 2 * p0));  // odd k: the last pair's high half is 0
    const __mmask16 lo = first_lanes(values), hi = first_lanes(values - 16);
    const int64_t count = std::min<int64_t>(16, pairs - p0);
    for (int64_t c0 = 0; c0 < kCols; c0 += 16) {
      for (int64_t c = 0; c < 16; ++c) {
        if (c0 + c >= cols) {
          words[c] = _mm512_setzero_si512();
          continue;
        }
        const float* src = b.data + (j0 + c0 + c) * b.col_stride + k0 + 2 * p0;
        words[c] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, src + 16), _mm512_maskz_loadu_ps(lo, src));
      }
      transpose_16x16(words);
      for (int64_t q = 0; q < count; ++q) _mm512_storeu_si512(panel + (p0 + q) * kCols + c0, words[q]);
    }
  }
}

// B's depth [k0, k0 + 2·pairs) × columns [j0, j0 + kCols) → one panel; zero outside B.
PCONV_BF16_TARGET void pack_rhs_panel(const MatrixF32& b, int64_t k, int64_t n, int64_t k0, int64_t j0,
                                      int64_t pairs, uint32_t* panel) {
  const int64_t cols = std::min(kCols, n - j0);
  if (b.col_stride != 1 && b.row_stride == 1) return pack_rhs_panel_transposed(b, k, cols, k0, j0, pairs, panel);
  const __mmask16 m0 = first_lanes(cols), m1 = first_lanes(cols - 16);
  alignas(64) float even[kCols], odd[kCols];
  for (int64_t p = 0; p < pairs; ++p) {
    const int64_t ke = k0 + 2 * p;  // < k always; ke + 1 may not be
    __m512 e0, e1, o0 = _mm512_setzero_ps(), o1 = _mm512_setzero_ps();
    if (b.col_stride == 1) {  // rows contiguous (im2col columns, gradients): masked vector loads
      const float* row = b.data + ke * b.row_stride + j0;
      e0 = _mm512_maskz_loadu_ps(m0, row);
      e1 = _mm512_maskz_loadu_ps(m1, row + 16);
      if (ke + 1 < k) {
        o0 = _mm512_maskz_loadu_ps(m0, row + b.row_stride);
        o1 = _mm512_maskz_loadu_ps(m1, row + b.row_stride + 16);
      }
    } else {  // any other strides: gather
      for (int64_t c = 0; c < kCols; ++c) {
        const float* src = b.data + ke * b.row_stride + (j0 + c) * b.col_stride;
        even[c] = c < cols ? src[0] : 0.0f;
        odd[c] = c < cols && ke + 1 < k ? src[b.row_stride] : 0.0f;
      }
      e0 = _mm512_load_ps(even);
      e1 = _mm512_load_ps(even + 16);
      o0 = _mm512_load_ps(odd);
      o1 = _mm512_load_ps(odd + 16);
    }
    _mm512_storeu_si512(panel + p * kCols, bf16_pairs(e0, o0));
    _mm512_storeu_si512(panel + p * kCols + 16, bf16_pairs(e1, o1));
  }
}

// ---- B packed straight from a convolution's images (ConvColumns: implicit im2col) ----
// im2col wrote a band's cols (2 MiB) and the packer read it again; here each panel row is
// loaded from the image rows it comes from, with masked loads whose masked-off lanes (the
// padding) stay 0 and are never read. Where a panel's lanes come from is worked out once per
// panel and tap (ki, kj), so a row of the panel costs a couple of loads, not index arithmetic
// (working it out for every row, with gathers for stride 2, measured 0.78–0.89× of im2col +
// packing on the 256² and 128² layers' forward).

// Lanes [l0, l1) of a panel row whose pixels lie in one output row of one image: lane l reads
// input row ih0 + ki, column iw0 + l·stride + kj of `image`.
struct Segment {
  const float* image;
  int64_t l0, l1, ih0, iw0;
};

// The segments of pixels [j0, j0 + count), count ≤ 32, lane l being pixel j0 + l.
int make_segments(const ConvColumns& s, int64_t j0, int64_t count, Segment* out) {
  const int64_t per_image = s.rows * s.Wo;
  int n = 0;
  for (int64_t l = 0; l < count;) {
    const int64_t j = j0 + l, image = j / per_image, q = j % per_image;
    const int64_t oh = s.oh0 + q / s.Wo, ow = q % s.Wo, len = std::min(s.Wo - ow, count - l);
    out[n++] = {s.x + image * s.C * s.H * s.W, l, l + len, oh * s.stride - s.pad, (ow - l) * s.stride - s.pad};
    l += len;
  }
  return n;
}

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Bits [lo, hi) of 64 (none when lo ≥ hi).
uint64_t bit_range(int64_t lo, int64_t hi) {
  if (lo >= hi) return 0;
  return (hi >= 64 ? ~uint64_t(0) : (uint64_t(1) << hi) - 1) & ~((uint64_t(1) << lo) - 1);
}

// One segment under one tap: lane l of the panel row of channel plane P is at[P + l·stride],
// for the lanes in `lanes`. For stride 2 the row is read as 64 consecutive floats and the even
// ones kept: `source` says which of those 64 may be read.
struct Tap {
  const float* at;  // lane 0's address in plane 0 (may lie outside the image: never read there)
  uint32_t lanes;
  uint64_t source;
};

// taps[(ki·kw + kj)·segments + i]: segment i under tap (ki, kj).
void make_taps(const ConvColumns& s, const Segment* seg, int segments, Tap* t) {
  for (int64_t ki = 0; ki < s.kh; ++ki)
    for (int64_t kj = 0; kj < s.kw; ++kj)
      for (int i = 0; i < segments; ++i, ++t) {
        const Segment& g = seg[i];
        const int64_t ih = g.ih0 + ki, iw = g.iw0 + kj;  // iw: lane 0's column
        // Lanes whose column iw + l·stride lies in [0, W), on a row inside the image.
        const int64_t first = std::max(g.l0, -floor_div(iw, s.stride));
        const int64_t end = ih < 0 || ih >= s.H ? 0 : std::min(g.l1, floor_div(s.W - 1 - iw, s.stride) + 1);
        const uint64_t lanes = bit_range(first, end);
        *t = {lanes ? g.image + ih * s.W + iw : g.image, uint32_t(lanes), bit_range(2 * first, 2 * end - 1)};
      }
}

// The taps of each column panel jp in [jp0, jp1) of B = cols: kh·kw·segments[i] of them
// from taps[start[i]], i = jp − jp0. In the calling thread's buffer.
struct PanelTaps {
  std::vector<Tap> taps;
  std::vector<size_t> start;
  std::vector<int> segments;
};
const PanelTaps& panel_taps(const ConvColumns& s, int64_t n, int64_t jp0, int64_t jp1) {
  thread_local PanelTaps t;
  t.taps.clear();
  t.start.clear();
  t.segments.clear();
  Segment seg[kCols];
  for (int64_t jp = jp0; jp < jp1; ++jp) {
    const int segments = make_segments(s, jp * kCols, std::min(kCols, n - jp * kCols), seg);
    t.start.push_back(t.taps.size());
    t.segments.push_back(segments);
    t.taps.resize(t.taps.size() + size_t(s.kh * s.kw * segments));
    make_taps(s, seg, segments, t.taps.data() + t.start.back());
  }
  return t;
}

// The panel row of channel plane `plane` (c·H·W) under one tap's segments, as two vectors (lanes
// 0–15, 16–31); 0 outside the image and past the segments, as in im2col's cols.
PCONV_BF16_TARGET inline void tap_row(const ConvColumns& s, const Tap* taps, int segments, int64_t plane,
                                      __m512& lo, __m512& hi) {
  lo = hi = _mm512_setzero_ps();
  for (int i = 0; i < segments; ++i) {
    const Tap& t = taps[i];
    const uint32_t m = t.lanes;
    if (m == 0) continue;
    const float* row = t.at + plane;
    if (s.stride == 1) {
      if (m & 0xFFFFu) lo = _mm512_mask_loadu_ps(lo, __mmask16(m), row);
      if (m >> 16) hi = _mm512_mask_loadu_ps(hi, __mmask16(m >> 16), row + 16);
    } else if (s.stride == 2) {  // lanes l ← source 2l: two loads and a permute per 16 lanes
      const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
      for (int h = 0; h < 2; ++h) {
        const __mmask16 keep = __mmask16(m >> (16 * h));
        if (!keep) continue;
        const __m512 a = _mm512_maskz_loadu_ps(__mmask16(t.source >> (32 * h)), row + 32 * h);
        const __m512 b = _mm512_maskz_loadu_ps(__mmask16(t.source >> (32 * h + 16)), row + 32 * h + 16);
        __m512& v = h ? hi : lo;
        v = _mm512_mask_mov_ps(v, keep, _mm512_permutex2var_ps(a, even, b));
      }
    } else {
      const __m512i index = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                               _mm512_set1_epi32(int(s.stride)));
      if (m & 0xFFFFu) lo = _mm512_mask_i32gather_ps(lo, __mmask16(m), index, row, 4);
      if (m >> 16) hi = _mm512_mask_i32gather_ps(hi, __mmask16(m >> 16), index, row + 16 * s.stride, 4);
    }
  }
}

// pack_rhs_panel for B = cols (the forward): panels [jp0, jp1) of depth [k0, k0 + 2·pairs),
// panel jp at packed + jp·kCols·pairs. Row by row across the panels, not panel by panel: one
// panel's rows lie channel planes apart, a power-of-two stride that puts them in one cache set
// (panel by panel measured 0.92× of im2col + packing on 64→64 at 256², this way 1.13×), while
// a row across the panels reads image rows in order.
PCONV_BF16_TARGET void pack_conv_panels(const ConvColumns& s, int64_t k, int64_t n, int64_t k0, int64_t pairs,
                                        int64_t jp0, int64_t jp1, uint32_t* packed) {
  if (jp0 >= jp1) return;
  const PanelTaps& pt = panel_taps(s, n, jp0, jp1);
  const int64_t kk = s.kh * s.kw, hw = s.H * s.W;
  int64_t tap = k0 % kk, plane = k0 / kk * hw;  // depth row r = c·kk + tap, c·H·W = plane
  for (int64_t p = 0; p < pairs; ++p) {
    const int64_t even_tap = tap, even_plane = plane;
    if (++tap == kk) tap = 0, plane += hw;
    const bool odd = k0 + 2 * p + 1 < k;
    const int64_t odd_tap = tap, odd_plane = plane;
    if (odd && ++tap == kk) tap = 0, plane += hw;
    for (int64_t jp = jp0; jp < jp1; ++jp) {
      const Tap* taps = pt.taps.data() + pt.start[size_t(jp - jp0)];
      const int segments = pt.segments[size_t(jp - jp0)];
      __m512 e0, e1, o0 = _mm512_setzero_ps(), o1 = _mm512_setzero_ps();
      tap_row(s, taps + even_tap * segments, segments, even_plane, e0, e1);
      if (odd) tap_row(s, taps + odd_tap * segments, segments, odd_plane, o0, o1);
      uint32_t* panel = packed + jp * kCols * pairs;
      _mm512_storeu_si512(panel + p * kCols, bf16_pairs(e0, o0));
      _mm512_storeu_si512(panel + p * kCols + 16, bf16_pairs(e1, o1));
    }
  }
}

// pack_rhs_panel_transposed for B = colsᵀ (the weight gradient): pixels [k0, k0 + 2·pairs) ×
// depth rows [j0, j0 + kCols). Each depth row's 32 pixels load as for the forward, then
// 16 rows × 16 pairs are transposed in registers.
// pt: the taps of the depth block's groups of 32 pixels (panel_taps with n = k from k0 / 32),
// the same for every panel.
PCONV_BF16_TARGET void pack_conv_panel_transposed(const ConvColumns& s, const PanelTaps& pt, int64_t n, int64_t j0,
                                                  int64_t pairs, uint32_t* panel) {
  const int64_t cols = std::min(kCols, n - j0), kk = s.kh * s.kw, hw = s.H * s.W;
  __m512i words[16];
  for (int64_t p0 = 0; p0 < pairs; p0 += 16) {
    const Tap* taps = pt.taps.data() + pt.start[size_t(p0 / 16)];
    const int segments = pt.segments[size_t(p0 / 16)];
    const int64_t count = std::min<int64_t>(16, pairs - p0);
    int64_t tap = j0 % kk, plane = j0 / kk * hw;
    for (int64_t c0 = 0; c0 < kCols; c0 += 16) {
      for (int64_t c = 0; c < 16; ++c) {
        if (c0 + c >= cols) {
          words[c] = _mm512_setzero_si512();
          continue;
        }
        __m512 lo, hi;
        tap_row(s, taps + tap * segments, segments, plane, lo, hi);
        if (++tap == kk) tap = 0, plane += hw;
        words[c] = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
      }
      transpose_16x16(words);
      for (int64_t q = 0; q < count; ++q) _mm512_storeu_si512(panel + (p0 + q) * kCols + c0, words[q]);
    }
  }
}

// The tile C[0, rows) × [0, cols) (=, or += when accumulate) A panel · B panel over `pairs`.
PCONV_BF16_TARGET void kernel(int64_t pairs, const uint32_t* a, const uint32_t* b, float* c, int64_t ldc,
                              int64_t rows, int64_t cols, bool accumulate) {
  const __mmask16 m0 = first_lanes(cols), m1 = first_lanes(cols - 16);
  __m512 acc0[kRows], acc1[kRows];
#pragma GCC unroll 8
  for (int64_t r = 0; r < kRows; ++r) {
    const bool load = accumulate && r < rows;
    acc0[r] = load ? _mm512_maskz_loadu_ps(m0, c + r * ldc) : _mm512_setzero_ps();
    acc1[r] = load ? _mm512_maskz_loadu_ps(m1, c + r * ldc + 16) : _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < pairs; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + p * kCols);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + p * kCols + 16);
#pragma GCC unroll 8
    for (int64_t r = 0; r < kRows; ++r) {
      const __m512bh ar = (__m512bh)_mm512_set1_epi32(int(a[p * kRows + r]));
      acc0[r] = _mm512_dpbf16_ps(acc0[r], ar, b0);
      acc1[r] = _mm512_dpbf16_ps(acc1[r], ar, b1);
    }
  }
#pragma GCC unroll 8
  for (int64_t r = 0; r < kRows; ++r)
    if (r < rows) {
      _mm512_mask_storeu_ps(c + r * ldc, m0, acc0[r]);
      _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc1[r]);
    }
}

// The calling thread's buffer for the packed B of one depth block; only grows.
uint32_t* rhs_buffer(int64_t words) {
  struct Buffer {
    void* data = nullptr;
    size_t bytes = 0;
    ~Buffer() { std::free(data); }
  };
  thread_local Buffer buffer;
  const size_t need = (size_t(words) * sizeof(uint32_t) + 63) / 64 * 64;
  if (need > buffer.bytes) {
    std::free(buffer.data);
    buffer.data = std::aligned_alloc(64, need);
    buffer.bytes = buffer.data ? need : 0;
    if (!buffer.data) throw Error("gemm_bf16: out of memory for " + std::to_string(need >> 20) + " MiB of packed operands");
  }
  return static_cast<uint32_t*>(buffer.data);
}

}  // namespace

PackedBf16Lhs::PackedBf16Lhs(int64_t rows, int64_t depth, MatrixF32 a) : m(rows), k(depth) {
  const int64_t row_panels = ceil_div(m, kRows), blocks = ceil_div(k, kDepth);
  words.assign(size_t(blocks * row_panels * kRows * kPairs), 0u);
  const int64_t tasks = blocks * ceil_div(row_panels, 2);
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && tasks > 1 && m * k >= (int64_t(1) << 16))
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t kb = t % blocks, ip = 2 * (t / blocks), k0 = kb * kDepth;
    const int64_t pairs = ceil_div(std::min(kDepth, k - k0), 2);
    uint32_t* second = ip + 1 < row_panels ? words.data() + lhs_offset(row_panels, kb, ip + 1) : nullptr;
    pack_lhs_panels(a, m, k, ip * kRows, k0, pairs, words.data() + lhs_offset(row_panels, kb, ip), second);
  }
}

namespace {

// The GEMM for any B: pack_b(k0, pairs, jp0, jp1, packed) packs B's column panels [jp0, jp1) of
// the depth block at k0, panel jp at packed + jp·kCols·pairs.
template <typename PackB>
void gemm_packed(const PackedBf16Lhs& a, int64_t n, PackB&& pack_b, float* c, int64_t ldc, bool accumulate) {
  const int64_t m = a.m, k = a.k;
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill_n(c + i * ldc, n, 0.0f);
    return;
  }
  const int64_t row_panels = ceil_div(m, kRows), col_panels = ceil_div(n, kCols);
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const bool threaded = threads > 1 && m * n * k >= (int64_t(1) << 20);
  // C is walked a row panel at a time, left to right: 8 rows streamed in order. (Column panel
  // by column panel, rows ldc apart at a power-of-two multiple fall into the same cache sets:
  // a 512 × 9216 weight gradient ran 18× slower than Eigen that way.) Each task is one row
  // panel, or a range of its columns when there are fewer row panels than twice the threads.
  const int64_t col_groups = threaded ? std::clamp<int64_t>(ceil_div(2 * threads, row_panels), 1, col_panels) : 1;
  const int64_t per_group = ceil_div(col_panels, col_groups), tasks = row_panels * col_groups;
  uint32_t* packed_b = rhs_buffer(col_panels * kCols * kPairs);
  for (int64_t k0 = 0, kb = 0; k0 < k; k0 += kDepth, ++kb) {
    const int64_t pairs = ceil_div(std::min(kDepth, k - k0), 2);
    const bool add = accumulate || k0 > 0;
#pragma omp parallel if (threaded)
    {
      const int64_t thread = omp_get_thread_num(), team = omp_get_num_threads();
      pack_b(k0, pairs, col_panels * thread / team, col_panels * (thread + 1) / team, packed_b);
#pragma omp barrier
#pragma omp for schedule(static)
      for (int64_t t = 0; t < tasks; ++t) {
        const int64_t ip = t / col_groups, group = t % col_groups;
        const uint32_t* panel_a = a.words.data() + lhs_offset(row_panels, kb, ip);
        const int64_t jp_end = std::min(col_panels, (group + 1) * per_group);
        for (int64_t jp = group * per_group; jp < jp_end; ++jp)
          kernel(pairs, panel_a, packed_b + jp * kCols * pairs, c + ip * kRows * ldc + jp * kCols, ldc,
                 std::min(kRows, m - ip * kRows), std::min(kCols, n - jp * kCols), add);
      }
    }
  }
}

}  // namespace

void gemm_bf16(const PackedBf16Lhs& a, int64_t n, MatrixF32 b, float* c, int64_t ldc, bool accumulate) {
  const int64_t k = a.k;
  gemm_packed(a, n, [&](int64_t k0, int64_t pairs, int64_t jp0, int64_t jp1, uint32_t* packed) {
    for (int64_t jp = jp0; jp < jp1; ++jp) pack_rhs_panel(b, k, n, k0, jp * kCols, pairs, packed + jp * kCols * pairs);
  }, c, ldc, accumulate);
}

void gemm_bf16(const PackedBf16Lhs& a, const ConvColumns& b, float* c, int64_t ldc, bool accumulate) {
  const int64_t k = a.k, n = b.transposed ? b.depth() : b.pixels();
  if (k != (b.transposed ? b.pixels() : b.depth()))
    throw Error("gemm_bf16: A has depth " + std::to_string(k) + ", the convolution's columns " +
                std::to_string(b.transposed ? b.pixels() : b.depth()));
  gemm_packed(a, n, [&](int64_t k0, int64_t pairs, int64_t jp0, int64_t jp1, uint32_t* packed) {
    if (!b.transposed) return pack_conv_panels(b, k, n, k0, pairs, jp0, jp1, packed);
    if (jp0 >= jp1) return;
    const PanelTaps& pixels = panel_taps(b, k, k0 / kCols, k0 / kCols + ceil_div(pairs, 16));
    for (int64_t jp = jp0; jp < jp1; ++jp)
      pack_conv_panel_transposed(b, pixels, n, jp * kCols, pairs, packed + jp * kCols * pairs);
  }, c, ldc, accumulate);
}

void gemm_bf16(int64_t m, MatrixF32 a, const ConvColumns& b, float* c, int64_t ldc, bool accumulate) {
  gemm_bf16(PackedBf16Lhs(m, b.transposed ? b.pixels() : b.depth(), a), b, c, ldc, accumulate);
}

void gemm_bf16(int64_t m, int64_t n, int64_t k, MatrixF32 a, MatrixF32 b, float* c, int64_t ldc,
               bool accumulate) {
  gemm_bf16(PackedBf16Lhs(m, k, a), n, b, c, ldc, accumulate);
}

}  // namespace pconv
