// Copies between a tensor and a slice of another along one dim (concat and its backward).
// Both sides are `outer` rows of contiguous bytes with different pitches: one 2-D memcpy.
#include "cuda/check.h"
#include "cuda/cuda_backend.h"

namespace pconv {

namespace {

// Copies x (the narrow side) to or from y[.., start : start + x.size(dim), ..].
void slice_copy(cudaStream_t stream, const char* op, const Tensor& narrow, const Tensor& wide,
                int64_t dim, int64_t start, bool into_wide) {
  const int64_t r = wide.dim();
  if (dim < 0) dim += r;
  bool ok = narrow.dim() == r && dim >= 0 && dim < r && narrow.dtype() == wide.dtype();
  if (ok) ok = start >= 0 && start + narrow.size(dim) <= wide.size(dim);
  for (int64_t d = 0; ok && d < r; ++d)
    if (d != dim && narrow.size(d) != wide.size(d)) ok = false;
  if (!ok)
    throw Error(std::string(op) + ": slice " + shape_str(narrow.shape()) + " at " +
                std::to_string(start) + " along dim " + std::to_string(dim) + " does not fit " +
                shape_str(wide.shape()));
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= wide.size(d);
  for (int64_t d = dim + 1; d < r; ++d) inner *= wide.size(d);
  const size_t es = dtype_size(wide.dtype());
  const size_t row = size_t(narrow.size(dim) * inner) * es;
  const size_t wide_pitch = size_t(wide.size(dim) * inner) * es;
  if (row == 0 || outer == 0) return;
  char* wide_at = static_cast<char*>(wide.raw_data()) + size_t(start * inner) * es;
  if (outer == 1) {  // one run of bytes (also keeps huge pitches away from the 2-D copy)
    CUDA_CHECK(cudaMemcpyAsync(into_wide ? wide_at : narrow.raw_data(),
                               into_wide ? narrow.raw_data() : wide_at, row,
                               cudaMemcpyDeviceToDevice, stream));
  } else if (into_wide) {
    CUDA_CHECK(cudaMemcpy2DAsync(wide_at, wide_pitch, narrow.raw_data(), row, row, size_t(outer),
                                 cudaMemcpyDeviceToDevice, stream));
  } else {
    CUDA_CHECK(cudaMemcpy2DAsync(narrow.raw_data(), row, wide_at, wide_pitch, row, size_t(outer),
                                 cudaMemcpyDeviceToDevice, stream));
  }
}

}  // namespace

void CudaBackend::copy_into_slice(const Tensor& x, Tensor& y, int64_t dim, int64_t start) {
  slice_copy(stream_, "copy_into_slice", x, y, dim, start, true);
}

void CudaBackend::copy_from_slice(const Tensor& x, int64_t dim, int64_t start, Tensor& y) {
  slice_copy(stream_, "copy_from_slice", y, x, dim, start, false);
}

}  // namespace pconv
