#include "core/data/imagenet.h"

#include "core/ops.h"

namespace pconv {
namespace {

// A 1×3×1×1 (or 3×1×1) tensor of per-channel constants, broadcast against the image.
Tensor per_channel(const double (&v)[3], const Tensor& like, const char* op) {
  const int64_t rank = like.dim();
  if ((rank != 3 && rank != 4) || like.size(rank - 3) != 3)
    throw Error(std::string(op) + ": expected N×3×H×W or 3×H×W, got " + shape_str(like.shape()));
  const Shape s = rank == 4 ? Shape{1, 3, 1, 1} : Shape{3, 1, 1};
  return Tensor::from_vector(std::vector<double>{v[0], v[1], v[2]}, s).to(like.dtype()).to(like.device());
}

}  // namespace

Tensor imagenet_normalize(const Tensor& rgb01) {
  return (rgb01 - per_channel(kImageNetMean, rgb01, "imagenet_normalize")) /
         per_channel(kImageNetStd, rgb01, "imagenet_normalize");
}

Tensor imagenet_denormalize(const Tensor& x) {
  return x * per_channel(kImageNetStd, x, "imagenet_denormalize") +
         per_channel(kImageNetMean, x, "imagenet_denormalize");
}

}  // namespace pconv
