#pragma once
// Convolutions with few output channels (K ≤ kThinMaxK: the UNet's last layer, 35 → 3, and the
// PatchGAN's score layer, 256 → 1), forward and both backwards, without im2col: a GEMM with K
// rows does 2K flops per column entry it packs, so it would be bound by the packing.
// They sum f32 (f64) products in f32 (f64) under every --precision: bf16 dot products are
// only the GEMM path's (core/cpu/dot_precision.h).
#include "core/cpu/conv_geometry.h"

namespace pconv::cpu_conv {

constexpr int64_t kThinMaxK = 4;

// y = conv(x, w) (overwritten).
template <typename T>
void thin_forward(const T* x, const T* w, T* y, const ConvGeometry& g);
// gx = the adjoint of conv(·, w) applied to gy (overwritten).
template <typename T>
void thin_backward_data(const T* gy, const T* w, T* gx, const ConvGeometry& g);
// gw = Σ over images and output pixels of gy · the input window (overwritten).
template <typename T>
void thin_backward_weight(const T* gy, const T* x, T* gw, const ConvGeometry& g);

}  // namespace pconv::cpu_conv
