#include "models/harmonic_fill.h"

#include "core/autograd.h"

namespace pconv {

Tensor harmonic_fill(const Tensor& image, const Tensor& mask, const HarmonicFillParams& params) {
  check_rank("harmonic_fill", "image", image, 4);
  check_rank("harmonic_fill", "mask", mask, 4);
  const int64_t N = image.size(0), H = image.size(2), W = image.size(3);
  if (mask.size(0) != N || mask.size(1) != 1 || mask.size(2) != H || mask.size(3) != W)
    throw Error("harmonic_fill: mask " + shape_str(mask.shape()) + " does not fit image " +
                shape_str(image.shape()) + " (want N×1×H×W)");
  check_same_device("harmonic_fill", image, "image", mask, "mask");
  if (image.dtype() != DType::F32 && image.dtype() != DType::F64)
    throw Error("harmonic_fill: image must be f32 or f64");
  if (!(params.omega > 0 && params.omega < 2) || params.max_sweeps < 1 || !(params.tolerance >= 0))
    throw Error("harmonic_fill: omega must be in (0, 2), max_sweeps ≥ 1 and tolerance ≥ 0");
  NoGradGuard no_grad;
  // The kernel takes one dtype. Converting cannot move a value across 0.5 as the kernel sees it
  // (it compares in f32), so the mask marks the same pixels known in any dtype.
  const Tensor known = mask.dtype() == image.dtype() ? mask.detach() : mask.detach().to(image.dtype());
  Tensor out = Tensor::empty(image.shape(), image.dtype(), image.device());
  backend_of(image).harmonic_fill(image, known, out, params);
  return out;
}

}  // namespace pconv
