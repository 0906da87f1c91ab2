#pragma once
// Scalar helpers the CUDA kernels share with the host. They are plain C++ (no CUDA header),
// so tests/test_gpu.cpp compiles them on the host and checks them against the CPU backend's
// formulas on a machine without a GPU.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/dtype.h"

#if defined(__CUDACC__)
#define PCONV_HD __host__ __device__ inline
#else
#define PCONV_HD inline
#endif

namespace pconv::hd {

// ---- counter-based random numbers: copies of splitmix64 / hashed_uniform in
// core/cpu/cpu_backend.h and of CpuBackend::fill_uniform / fill_normal's formulas.
PCONV_HD uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
PCONV_HD double hashed_uniform(uint64_t seed, uint64_t counter) {
  uint64_t h = splitmix64(seed * 0x2545f4914f6cdd1dull ^ splitmix64(counter));
  return (double(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
PCONV_HD double uniform_value(double low, double high, uint64_t seed, uint64_t counter) {
  return low + (high - low) * hashed_uniform(seed, counter);
}
// Element i of fill_normal draws counters offset + 2i and offset + 2i + 1 (Box-Muller).
PCONV_HD double normal_value(double mean, double stddev, uint64_t seed, uint64_t offset,
                             uint64_t i) {
  double u1 = hashed_uniform(seed, offset + 2 * i);
  double u2 = hashed_uniform(seed, offset + 2 * i + 1);
  double z = ::sqrt(-2.0 * ::log(u1)) * ::cos(6.283185307179586 * u2);
  return mean + stddev * z;
}

// ---- storage conversions: copies of core/dtype.h and core/tensor.cpp's bit-exact
// bf16/f16 rounding, so a GPU copy gives the same bits as a CPU copy.
PCONV_HD uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
PCONV_HD float bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
PCONV_HD uint16_t f32_to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
PCONV_HD float bf16_to_f32(uint16_t h) { return bits_float(uint32_t(h) << 16); }

PCONV_HD uint16_t f32_to_f16(float f) {
  uint32_t x = float_bits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  int32_t exp = int32_t((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffffu;
  if (((x >> 23) & 0xff) == 0xff) return uint16_t(sign | 0x7c00u | (mant ? 0x200u : 0));
  if (exp >= 31) return uint16_t(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return uint16_t(sign);
    mant |= 0x800000u;
    uint32_t shift = uint32_t(14 - exp);
    uint32_t h = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) ++h;
    return uint16_t(sign | h);
  }
  uint32_t h = sign | (uint32_t(exp) << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;
  return uint16_t(h);
}
PCONV_HD float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ffu;
  uint32_t x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while (!(mant & 0x400u));
      x = sign | (uint32_t(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    x = sign | 0x7f800000u | (mant << 13);
  } else {
    x = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  return bits_float(x);
}

// Element i of a buffer of dtype dt, as double, and the reverse: the CPU backend's copy
// goes through double the same way (f64 -> bf16 rounds to f32 first).
PCONV_HD double load_as_double(const void* p, DType dt, int64_t i) {
  switch (dt) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::F64: return static_cast<const double*>(p)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::I64: return double(static_cast<const int64_t*>(p)[i]);
  }
  return 0;
}
PCONV_HD void store_double(void* p, DType dt, int64_t i, double v) {
  switch (dt) {
    case DType::F32: static_cast<float*>(p)[i] = float(v); break;
    case DType::F64: static_cast<double*>(p)[i] = v; break;
    case DType::BF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(float(v)); break;
    case DType::F16: static_cast<uint16_t*>(p)[i] = f32_to_f16(float(v)); break;
    case DType::I64: static_cast<int64_t*>(p)[i] = int64_t(v); break;
  }
}

}  // namespace pconv::hd
