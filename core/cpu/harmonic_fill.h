#pragma once
// The CPU's harmonic fill (Backend::harmonic_fill; what it is for: models/harmonic_fill.h).
//
// Solver: a cascade from coarse to fine. The image is pooled 2×2 with mask weights down to one
// pixel (a coarse pixel is known when any of its four is); the coarsest holes take the mean of
// the known pixels; each finer level starts its holes from the coarser solution and runs
// red–black successive over-relaxation until no hole pixel moves by more than `tolerance`
// (relative to the image's value range) or `max_sweeps` sweeps. The coarse start removes the
// slow, long-wavelength error that makes plain Jacobi need thousands of sweeps on big holes.
#include <cstdint>

#include "core/backend.h"

namespace pconv {

// One channel in place: `values` H×W row-major, `known` H×W (nonzero = known). A plane without
// any known pixel becomes 0. Returns the number of sweeps done at full resolution (for tests and
// benchmarks). The backend's kernel runs this on every (n, c) plane.
template <typename T>
int harmonic_fill_plane(T* values, const uint8_t* known, int64_t height, int64_t width,
                        const HarmonicFillParams& params = {});

}  // namespace pconv
