#pragma once
// What the benchmarks compare their GFLOP/s against: this machine's measured multiply-add peak,
// and a count of the flops the CPU's convolutions did.
//
// The peak is measured, not looked up: a loop of independent multiply-adds on registers (no
// memory traffic), on every OpenMP thread at once, so it is what these cores deliver under the
// current load and clock, the ceiling a kernel's GF/s is a fraction of.
#include <cstdint>

namespace pconv {

// GFLOP/s of f32 FMAs (AVX2 where the build has it; 2 flops each), on omp_get_max_threads()
// threads, the best of a few runs of about `seconds` each.
double measured_f32_fma_peak(double seconds = 0.05);
// The same with VDPBF16PS (4 flops per f32 lane: two products, two adds); 0 on a CPU without
// AVX512-BF16.
double measured_bf16_dot_peak(double seconds = 0.05);

// Flops (2·N·K·C·kh·kw·Ho·Wo per pass) the CPU backend's conv2d forward, backward-data and
// backward-weight have done since the last reset; thread-safe.
void add_conv_flops(double flops);
double conv_flops();
void reset_conv_flops();

}  // namespace pconv
