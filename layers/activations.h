#pragma once
// Parameter-free nonlinearities of the UNet: ReLU in the encoder, LeakyReLU(0.2) in the
// decoder (PAPER.md, the UNet table).
#include "core/ops.h"
#include "layers/module.h"

namespace pconv {

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) const;
};

class LeakyReLU : public Module {
 public:
  explicit LeakyReLU(double slope = 0.2) : slope_(slope) {}
  Tensor forward(const Tensor& x) const;
  double slope() const { return slope_; }

 private:
  double slope_;
};

}  // namespace pconv
