// Finding NaN and infinity in weights: see core/finite.h.
#include "core/finite.h"

#include <cmath>

namespace pconv {

namespace {

template <typename T>
int64_t first_non_finite_in(const T* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) return i;
  return -1;
}

}  // namespace

int64_t first_non_finite(const Tensor& t) {
  if (!t.defined() || t.dtype() == DType::I64) return -1;
  const Tensor cpu = t.device() == Device::CPU ? t : t.detach().to(Device::CPU);
  if (cpu.dtype() == DType::F32) return first_non_finite_in(cpu.data<float>(), cpu.numel());
  if (cpu.dtype() == DType::F64) return first_non_finite_in(cpu.data<double>(), cpu.numel());
  // f16 and bf16: their NaN and infinities stay NaN and infinities in f32.
  const Tensor f = cpu.detach().to(DType::F32);
  return first_non_finite_in(f.data<float>(), f.numel());
}

void check_finite(const std::string& name, const Tensor& t) {
  const int64_t i = first_non_finite(t);
  if (i < 0) return;
  const double v = t.device() == Device::CPU && t.dtype() == DType::F32 ? double(t.data<float>()[i])
                                                                        : t.to_double_vector()[size_t(i)];
  throw Error(name + " holds " + (std::isnan(v) ? "NaN" : v > 0 ? "inf" : "-inf") + " at element " +
              std::to_string(i) + " of " + std::to_string(t.numel()) +
              " (broken weights: a training run that diverged, or a damaged file)");
}

}  // namespace pconv
