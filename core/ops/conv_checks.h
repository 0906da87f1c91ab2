#pragma once
// Argument checks and helpers shared by conv2d (core/ops/conv.cpp, where they are defined)
// and partial_conv2d (core/ops/pconv.cpp).
#include "core/tensor.h"

namespace pconv {

// Input N×C×H×W and weight K×C×kh×kw defined, same device and dtype, channels agreeing;
// bias undefined or a K-vector.
void check_conv_args(const char* op, const Tensor& x, const Tensor& w, const Tensor& bias);
// N×K×Ho×Wo; throws when stride < 1, pad < 0 or the kernel does not fit the padded input.
Shape conv2d_output_shape(const char* op, const Tensor& x, const Tensor& w, int64_t stride,
                          int64_t pad);
// gy (N×K×Ho×Wo) summed over N, Ho, Wo: the gradient of a per-channel bias.
Tensor bias_gradient(const Tensor& gy);

}  // namespace pconv
