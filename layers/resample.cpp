#include "layers/resample.h"

namespace pconv {

Tensor Upsample::forward(const Tensor& x) const { return upsample2x(x, mode_); }

Mask Upsample::forward(const Mask& mask) const { return upsample_nearest2x(mask); }

Tensor MaxPool2d::forward(const Tensor& x) const { return max_pool2d(x); }

}  // namespace pconv
