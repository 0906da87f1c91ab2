#pragma once
// Conv2d: an ordinary convolution layer (VGG-16's trunk), weight K×C×k×k and optional bias K.
#include "core/ops.h"
#include "layers/module.h"

namespace pconv {

class Conv2d : public Module {
 public:
  // He-normal weights (std √(2/(C·k·k))) and PyTorch-style biases (uniform ±1/√(C·k·k)).
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride, int64_t pad,
         bool bias, Generator& gen, DType dtype = DType::F32, Device device = Device::CPU);

  Tensor forward(const Tensor& x) const;

  const Tensor& weight() const { return *weight_; }
  Tensor bias() const { return bias_ ? *bias_ : Tensor{}; }  // undefined without bias
  int64_t stride() const { return stride_; }
  int64_t padding() const { return pad_; }

 private:
  Tensor* weight_ = nullptr;
  Tensor* bias_ = nullptr;
  int64_t stride_, pad_;
};

}  // namespace pconv
