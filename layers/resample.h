#pragma once
// Resampling layers: ×2 upsampling of features (PAPER.md: nearest; bilinear as an option) and
// of grouped masks (always nearest, so masks stay binary), and 2×2 max-pooling for VGG.
#include "core/ops.h"
#include "layers/module.h"

namespace pconv {

class Upsample : public Module {
 public:
  explicit Upsample(Upsampling mode = Upsampling::Nearest) : mode_(mode) {}
  Tensor forward(const Tensor& x) const;  // N×C×H×W → N×C×2H×2W, nearest or bilinear
  Mask forward(const Mask& mask) const;   // each group's N×1×H×W mask, always nearest (stays binary)
  Upsampling mode() const { return mode_; }

 private:
  Upsampling mode_;
};

class MaxPool2d : public Module {
 public:
  Tensor forward(const Tensor& x) const;  // 2×2 windows, stride 2
};

}  // namespace pconv
