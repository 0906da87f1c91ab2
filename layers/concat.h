#pragma once
// Skip connections of the UNet: features and their masks are joined as [upsampled, skip]
// (PAPER.md "At a skip"); masks as lists of groups, so no mask is ever widened to C channels
// (DESIGN.md "Masks: groups").
#include "core/ops.h"
#include "layers/module.h"

namespace pconv {

struct MaskedFeatures {
  Tensor x;
  Mask mask;
};

class Concat : public Module {
 public:
  // Channels of `upsampled` first, then those of `skip`; the spatial sizes must agree.
  Tensor forward(const Tensor& upsampled, const Tensor& skip) const;
  Mask forward(const Mask& upsampled, const Mask& skip) const;
  MaskedFeatures forward(const MaskedFeatures& upsampled, const MaskedFeatures& skip) const;
};

}  // namespace pconv
