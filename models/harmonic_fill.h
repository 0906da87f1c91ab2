#pragma once
// Harmonic fill: every hole pixel gets the value that makes it the average of its 4 neighbours
// (the discrete Laplace equation, Δu = 0 in the holes, u = the image on known pixels; at the
// image border only the neighbours inside count, a Neumann condition). It is the smoothest
// surface that meets the hole's border, what diffusion-based classical inpainting converges to.
//
// Used as the starting point of a residual PConvUNet (PConvUNetConfig::fill): the network adds
// texture to this fill instead of drawing every colour itself. On flat regions (sky, fog,
// walls) the fill is already within a level or two of the truth, which a network that outputs
// absolute colours from 1/128-resolution features does not reach (MODEL_CARD.md measures it).
//
// The work is a Backend kernel (Backend::harmonic_fill; the CPU's coarse-to-fine solver is in
// core/cpu/harmonic_fill.h, other devices go through the host). Linear in the image for a fixed
// mask and exact to within the tolerance; there is no backward: it is an input to the network,
// computed without gradient.
#include "core/backend.h"
#include "core/tensor.h"

namespace pconv {

// image N×C×H×W (f32 or f64, on any device), mask N×1×H×W on the same device (1 = known,
// 0 = hole; values ≥ 0.5 count as known). Returns a new tensor, without a graph, equal to
// `image` on known pixels and the harmonic fill in holes. An image without any known pixel is
// filled with 0 (in normalised space the mean colour).
Tensor harmonic_fill(const Tensor& image, const Tensor& mask, const HarmonicFillParams& params = {});

}  // namespace pconv
