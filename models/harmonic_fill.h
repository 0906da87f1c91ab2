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
// Solver: a cascade from coarse to fine. The image is pooled 2×2 with mask weights down to one
// pixel (a coarse pixel is known when any of its four is); the coarsest holes take the mean of
// the known pixels; each finer level starts its holes from the coarser solution and runs
// red–black successive over-relaxation until no hole pixel moves by more than `tolerance`
// (relative to the image's value range) or `max_sweeps` sweeps. The coarse start removes the
// slow, long-wavelength error that makes plain Jacobi need thousands of sweeps on big holes.
//
// Linear in the image for a fixed mask and exact to within the tolerance; there is no backward:
// it is an input to the network, computed without gradient (callers pass detached tensors).
#include "core/tensor.h"

namespace pconv {

struct HarmonicFillOptions {
  double tolerance = 1e-5;  // largest change of a sweep, times the value range, to stop at
  int max_sweeps = 2000;    // per level
  double omega = 1.9;       // over-relaxation factor, in (0, 2): 86 sweeps at 256² where 1.0 needs 285
};

// image N×C×H×W (f32 or f64, CPU or CUDA: non-CPU tensors are filled on the CPU and copied
// back), mask N×1×H×W (1 = known, 0 = hole; values ≥ 0.5 count as known). Returns a new tensor
// equal to `image` on known pixels and the harmonic fill in holes. An image without any known
// pixel is filled with 0 (in normalised space the mean colour).
Tensor harmonic_fill(const Tensor& image, const Tensor& mask, const HarmonicFillOptions& options = {});

// One channel in place: `values` H×W row-major, `known` H×W (nonzero = known). Returns the
// number of sweeps done at full resolution (for tests and benchmarks).
template <typename T>
int harmonic_fill_plane(T* values, const uint8_t* known, int64_t height, int64_t width,
                        const HarmonicFillOptions& options = {});

}  // namespace pconv
