#pragma once
// The harmonic fill a residual PConvUNet starts from (PConvUNetConfig::Fill::Harmonic), made
// from a training sample in the data loader's threads (DatasetOptions::harmonic_fill), so the
// trainer's main thread does not solve it while the cores could train.
//
// The same values, bit for bit, as models/harmonic_fill.h's harmonic_fill(imagenet_normalize(
// image) · mask, mask), which the model's forward computes when it is not handed a fill: the
// same f32 operations per pixel, then the same plane solver (core/cpu/harmonic_fill.h) on each
// channel. It runs serially on the calling thread (no OpenMP team beside the trainer's).
#include "core/data/masks.h"
#include "core/tensor.h"

namespace pconv {

// image 3×H×W f32 in [0,1], mask H×W (1 known, 0 hole). Writes the 3×H×W fill, in the network's
// (ImageNet) space, to `out`.
void network_fill(const Tensor& image01, const MaskImage& mask, float* out);

}  // namespace pconv
