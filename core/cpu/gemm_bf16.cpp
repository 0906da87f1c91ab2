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

void gemm_bf16(const PackedBf16Lhs& a, int64_t n, MatrixF32 b, float* c, int64_t ldc, bool accumulate) {
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
#pragma omp for schedule(static)
      for (int64_t jp = 0; jp < col_panels; ++jp)
        pack_rhs_panel(b, k, n, k0, jp * kCols, pairs, packed_b + jp * kCols * pairs);
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

void gemm_bf16(int64_t m, int64_t n, int64_t k, MatrixF32 a, MatrixF32 b, float* c, int64_t ldc,
               bool accumulate) {
  gemm_bf16(PackedBf16Lhs(m, k, a), n, b, c, ldc, accumulate);
}

}  // namespace pconv
