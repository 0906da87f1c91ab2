#include "layers/activations.h"

namespace pconv {

Tensor ReLU::forward(const Tensor& x) const { return relu(x); }

Tensor LeakyReLU::forward(const Tensor& x) const { return leaky_relu(x, slope_); }

}  // namespace pconv
