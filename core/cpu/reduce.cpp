// Sums over dims on the CPU. Sums accumulate in double so f32 losses and statistics over
// millions of elements stay accurate.
#include <omp.h>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/sum_contiguous.h"

namespace pconv {

namespace {

// x's dims merged into runs that are all kept or all reduced: {size, reduced}.
struct Run {
  int64_t size;
  bool reduced;
};

std::vector<Run> merge_runs(const Shape& x, const Shape& y) {
  std::vector<Run> runs;
  for (size_t d = 0; d < x.size(); ++d) {
    if (x[d] == 1) continue;  // size-1 dims change nothing
    bool reduced = y[d] == 1;
    if (!runs.empty() && runs.back().reduced == reduced)
      runs.back().size *= x[d];
    else
      runs.push_back({x[d], reduced});
  }
  return runs;
}

template <typename T>
void sum_all(const T* x, int64_t n, T* y) {
  const int64_t chunk = 1 << 16;
  const int64_t chunks = (n + chunk - 1) / chunk;
  std::vector<double> part(size_t(std::max<int64_t>(chunks, 1)), 0.0);
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c)
    part[size_t(c)] = sum_contiguous(x + c * chunk, std::min(chunk, n - c * chunk));
  double s = 0;
  for (double v : part) s += v;  // fixed order: the result does not depend on thread count
  *y = T(s);
}

template <typename T>
void sum_runs(const T* x, const std::vector<Run>& runs, T* y, int64_t ny) {
  // Strides of each run in x; output index = kept runs in order.
  const size_t r = runs.size();
  std::vector<int64_t> stride(r);
  int64_t s = 1;
  for (size_t i = r; i-- > 0;) stride[i] = s, s *= runs[i].size;
  std::vector<size_t> kept, red;
  for (size_t i = 0; i < r; ++i) (runs[i].reduced ? red : kept).push_back(i);
  int64_t nred = 1;
  for (size_t i : red) nred *= runs[i].size;
  const bool inner_reduced = runs.back().reduced;
  const int64_t inner = inner_reduced ? runs.back().size : 1;
#pragma omp parallel for schedule(static) if (ny * nred > 32768)
  for (int64_t o = 0; o < ny; ++o) {
    int64_t base = 0, rem = o;
    for (size_t k = kept.size(); k-- > 0;) {
      size_t i = kept[k];
      base += (rem % runs[i].size) * stride[i];
      rem /= runs[i].size;
    }
    double acc = 0;
    const int64_t outer = nred / inner;
    for (int64_t q = 0; q < outer; ++q) {
      int64_t off = base, rq = q;
      for (size_t k = red.size() - (inner_reduced ? 1 : 0); k-- > 0;) {
        size_t i = red[k];
        off += (rq % runs[i].size) * stride[i];
        rq /= runs[i].size;
      }
      acc += inner > 1 ? sum_contiguous(x + off, inner) : double(x[off]);
    }
    y[o] = T(acc);
  }
}

}  // namespace

void CpuBackend::sum_to(const Tensor& x, Tensor& y) {
  if (x.dim() != y.dim())
    throw Error("sum_to: ranks differ: " + shape_str(x.shape()) + " to " + shape_str(y.shape()));
  for (int64_t d = 0; d < x.dim(); ++d)
    if (y.shape()[size_t(d)] != 1 && y.shape()[size_t(d)] != x.shape()[size_t(d)])
      throw Error("sum_to: cannot reduce " + shape_str(x.shape()) + " to " + shape_str(y.shape()));
  dispatch_float("sum_to", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    if (x.numel() == 0) {
      for (int64_t i = 0; i < y.numel(); ++i) yp[i] = T(0);
      return;
    }
    std::vector<Run> runs = merge_runs(x.shape(), y.shape());
    bool any_reduced = false;
    for (auto& r : runs) any_reduced |= r.reduced;
    if (!any_reduced) {
      std::memcpy(yp, xp, size_t(x.numel()) * sizeof(T));
    } else if (y.numel() == 1) {
      sum_all(xp, x.numel(), yp);
    } else {
      sum_runs(xp, runs, yp, y.numel());
    }
  });
}

}  // namespace pconv
