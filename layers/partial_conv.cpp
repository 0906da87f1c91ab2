#include "layers/partial_conv.h"

#include <cmath>
#include <string>

namespace pconv {

PartialConv2d::PartialConv2d(int64_t in_channels, int64_t out_channels, int64_t kernel,
                             int64_t stride, bool bias, Generator& gen, DType dtype, Device device,
                             bool initialize)
    : stride_(stride) {
  if (in_channels < 1 || out_channels < 1 || kernel < 1 || stride < 1)
    throw Error("PartialConv2d: in_channels " + std::to_string(in_channels) + ", out_channels " +
                std::to_string(out_channels) + ", kernel " + std::to_string(kernel) +
                ", stride " + std::to_string(stride) + " must all be >= 1");
  const double fan_in = double(in_channels * kernel * kernel);
  const Shape wshape{out_channels, in_channels, kernel, kernel};
  weight_ = &register_parameter(
      "weight", initialize ? Tensor::randn(wshape, gen, dtype, device, 0.0, std::sqrt(2.0 / fan_in))
                           : Tensor::empty(wshape, dtype, device));
  if (bias) {
    const double bound = 1.0 / std::sqrt(fan_in);
    bias_ = &register_parameter("bias", initialize ? Tensor::rand({out_channels}, gen, dtype, device, -bound, bound)
                                                   : Tensor::empty({out_channels}, dtype, device));
  }
}

PConvResult PartialConv2d::forward(const Tensor& x, const Mask& mask) const {
  return partial_conv2d(x, mask, *weight_, bias(), stride_, padding());
}

}  // namespace pconv
