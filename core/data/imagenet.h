#pragma once
// ImageNet normalisation: the space the UNet, the VGG and the losses work in (DESIGN.md,
// "Numbers the whole project agrees on"). Holes are 0 in that space.
#include "core/tensor.h"

namespace pconv {

inline constexpr double kImageNetMean[3] = {0.485, 0.456, 0.406};
inline constexpr double kImageNetStd[3] = {0.229, 0.224, 0.225};

// (x − mean) / std per channel; x is N×3×H×W or 3×H×W RGB in [0,1]. Differentiable.
Tensor imagenet_normalize(const Tensor& rgb01);
// x · std + mean per channel (not clamped: saving clamps). Differentiable.
Tensor imagenet_denormalize(const Tensor& x);

}  // namespace pconv
