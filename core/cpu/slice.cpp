// Copies between a tensor and a slice of another along one dim. Both are contiguous, so the
// slice is `outer` blocks of (slice length × inner) elements, strided by the full length ×
// inner: one memcpy per block, whatever the dtype.
#include "core/cpu/cpu_backend.h"

namespace pconv {

namespace {

struct SliceBlocks {
  int64_t outer;        // product of the dims before `dim`
  size_t part_bytes;    // one block of the slice
  size_t whole_bytes;   // one block of the full tensor
  size_t start_bytes;   // offset of the slice inside a full block
};

SliceBlocks blocks_of(const char* op, const Tensor& part, const Tensor& whole, int64_t dim,
                      int64_t start) {
  const int64_t rank = whole.dim();
  if (dim < 0) dim += rank;
  if (dim < 0 || dim >= rank || part.dim() != rank)
    throw Error(std::string(op) + ": dim " + std::to_string(dim) + " for slice " +
                shape_str(part.shape()) + " of " + shape_str(whole.shape()));
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < rank; ++d) {
    if (d != dim && part.size(d) != whole.size(d))
      throw Error(std::string(op) + ": slice " + shape_str(part.shape()) + " does not fit " +
                  shape_str(whole.shape()) + " along dim " + std::to_string(dim));
    if (d < dim) outer *= whole.size(d);
    if (d > dim) inner *= whole.size(d);
  }
  if (start < 0 || start + part.size(dim) > whole.size(dim))
    throw Error(std::string(op) + ": slice " + shape_str(part.shape()) + " at " +
                std::to_string(start) + " along dim " + std::to_string(dim) + " exceeds " +
                shape_str(whole.shape()));
  if (part.dtype() != whole.dtype())
    throw Error(std::string(op) + ": dtypes differ, " + dtype_name(part.dtype()) + " and " +
                dtype_name(whole.dtype()));
  const size_t es = dtype_size(whole.dtype());
  return {outer, size_t(part.size(dim) * inner) * es, size_t(whole.size(dim) * inner) * es,
          size_t(start * inner) * es};
}

}  // namespace

void CpuBackend::copy_into_slice(const Tensor& x, Tensor& y, int64_t dim, int64_t start) {
  const SliceBlocks b = blocks_of("copy_into_slice", x, y, dim, start);
  if (b.part_bytes == 0 || b.outer == 0) return;
  const char* src = static_cast<const char*>(x.raw_data());
  char* dst = static_cast<char*>(y.raw_data());
#pragma omp parallel for schedule(static) if (b.outer > 1 && b.outer * b.part_bytes > (1 << 18))
  for (int64_t o = 0; o < b.outer; ++o)
    std::memcpy(dst + o * b.whole_bytes + b.start_bytes, src + o * b.part_bytes, b.part_bytes);
}

void CpuBackend::copy_from_slice(const Tensor& x, int64_t dim, int64_t start, Tensor& y) {
  const SliceBlocks b = blocks_of("copy_from_slice", y, x, dim, start);
  if (b.part_bytes == 0 || b.outer == 0) return;
  const char* src = static_cast<const char*>(x.raw_data());
  char* dst = static_cast<char*>(y.raw_data());
#pragma omp parallel for schedule(static) if (b.outer > 1 && b.outer * b.part_bytes > (1 << 18))
  for (int64_t o = 0; o < b.outer; ++o)
    std::memcpy(dst + o * b.part_bytes, src + o * b.whole_bytes + b.start_bytes, b.part_bytes);
}

}  // namespace pconv
