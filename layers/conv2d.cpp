#include "layers/conv2d.h"

#include <cmath>
#include <string>

namespace pconv {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
               int64_t pad, bool bias, Generator& gen, DType dtype, Device device)
    : stride_(stride), pad_(pad) {
  if (in_channels < 1 || out_channels < 1 || kernel < 1 || stride < 1 || pad < 0)
    throw Error("Conv2d: in_channels " + std::to_string(in_channels) + ", out_channels " +
                std::to_string(out_channels) + ", kernel " + std::to_string(kernel) +
                ", stride " + std::to_string(stride) + ", pad " + std::to_string(pad) +
                " out of range");
  const double fan_in = double(in_channels * kernel * kernel);
  weight_ = &register_parameter(
      "weight", Tensor::randn({out_channels, in_channels, kernel, kernel}, gen, dtype, device, 0.0,
                              std::sqrt(2.0 / fan_in)));
  if (bias) {
    const double bound = 1.0 / std::sqrt(fan_in);
    bias_ = &register_parameter("bias",
                                Tensor::rand({out_channels}, gen, dtype, device, -bound, bound));
  }
}

Tensor Conv2d::forward(const Tensor& x) const {
  return conv2d(x, *weight_, bias(), stride_, pad_);
}

}  // namespace pconv
