#pragma once
// Resampling layers: nearest ×2 upsampling of features and of grouped masks (PAPER.md:
// always nearest, so masks stay binary), and 2×2 max-pooling for VGG.
#include "core/ops.h"
#include "layers/module.h"

namespace pconv {

class Upsample : public Module {
 public:
  Tensor forward(const Tensor& x) const;  // N×C×H×W → N×C×2H×2W
  Mask forward(const Mask& mask) const;   // each group's N×1×H×W mask
};

class MaxPool2d : public Module {
 public:
  Tensor forward(const Tensor& x) const;  // 2×2 windows, stride 2
};

}  // namespace pconv
