#include "layers/concat.h"

namespace pconv {

Tensor Concat::forward(const Tensor& upsampled, const Tensor& skip) const {
  return concat({upsampled, skip}, 1);
}

Mask Concat::forward(const Mask& upsampled, const Mask& skip) const {
  return concat(upsampled, skip);
}

MaskedFeatures Concat::forward(const MaskedFeatures& upsampled, const MaskedFeatures& skip) const {
  return {forward(upsampled.x, skip.x), forward(upsampled.mask, skip.mask)};
}

}  // namespace pconv
