#pragma once
// PartialConv2d: the paper's partial convolution as a layer (PAPER.md "Partial convolution").
// Weight K×C×k×k, optional bias K, padding k//2 ("partial-convolution padding": the border
// counts as hole and the ratio compensates).
#include "core/ops.h"
#include "layers/module.h"

namespace pconv {

class PartialConv2d : public Module {
 public:
  // He (Kaiming) normal weights, std = √(2 / (C·k·k)), fit for the ReLU-family activations
  // that follow every PConv in the UNet; bias uniform ±1/√(C·k·k) as PyTorch's default.
  // initialize = false leaves the parameters unset (no random draws): for models whose
  // weights are loaded right after, where drawing 33M normals would double the load time.
  PartialConv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
                bool bias, Generator& gen, DType dtype = DType::F32, Device device = Device::CPU,
                bool initialize = true);

  // x N×C×H×W with its grouped mask → out N×K×Ho×Wo (0 in holes) and the updated mask.
  PConvResult forward(const Tensor& x, const Mask& mask) const;

  const Tensor& weight() const { return *weight_; }
  // Undefined when the layer has no bias.
  Tensor bias() const { return bias_ ? *bias_ : Tensor{}; }
  int64_t in_channels() const { return weight_->size(1); }
  int64_t out_channels() const { return weight_->size(0); }
  int64_t kernel_size() const { return weight_->size(2); }
  int64_t stride() const { return stride_; }
  int64_t padding() const { return kernel_size() / 2; }

 private:
  Tensor* weight_ = nullptr;
  Tensor* bias_ = nullptr;
  int64_t stride_;
};

}  // namespace pconv
