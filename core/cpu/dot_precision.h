#pragma once
// Which operands the CPU's convolution GEMMs multiply: f32 (the default), or bf16 with f32
// accumulation on CPUs with AVX512-BF16. One process-wide setting that the apps
// turn on with `--precision bf16`; weights, gradients, BatchNorm, losses and Adam stay f32.
#include <cstdint>
#include <cstring>

namespace pconv {

enum class CpuDotPrecision { F32, BF16 };

// True when this CPU runs VDPBF16PS (AVX512-BF16 with AVX512F/BW/VL) and the OS saves the
// AVX-512 registers.
bool cpu_has_bf16_dot();
// BF16 on a CPU without it throws Error saying so. F32 restores today's kernels exactly.
void set_cpu_dot_precision(CpuDotPrecision precision);
CpuDotPrecision cpu_dot_precision();
// Whether an f32 convolution pass with `out_channels` outputs and `output_pixels` (N·Ho·Wo)
// takes the bf16 dot products when they are on (core/cpu/conv.cpp routes by this): not the
// direct kernels of K ≤ 4, nor passes too small to pay for packing the weights.
bool conv_pass_takes_bf16(int64_t out_channels, int64_t output_pixels);

// f32 → bf16 bits, rounded to nearest even as VCVTNEPS2BF16 does: denormal inputs become
// signed zero and NaNs stay (quiet) NaNs, so scalar and vector packing agree bit for bit.
inline uint16_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7F800000u) == 0) return uint16_t((u >> 16) & 0x8000u);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((u >> 16) | 0x0040u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
// The f32 value of x rounded to bf16 (what the bf16 kernels multiply).
inline float round_to_bf16(float x) {
  const uint32_t u = uint32_t(bf16_bits(x)) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

}  // namespace pconv
