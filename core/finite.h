#pragma once
// Finding NaN and infinity in weights. A model with one NaN weight outputs NaN everywhere it
// reaches, which the 8-bit conversion turns into black holes with no word said; so every model
// loader (Module::load_state_dict, inpaint-import, inpaint-export) refuses such tensors, naming
// the tensor and the element.
#include <string>

#include "core/tensor.h"

namespace pconv {

// The index of the first NaN or ±inf element of a floating-point tensor (any device), or -1
// (also for integer tensors, which hold neither).
int64_t first_non_finite(const Tensor& t);

// Throws Error("<name> holds NaN at element i of n (...)") when the tensor is not all finite.
void check_finite(const std::string& name, const Tensor& t);

}  // namespace pconv
