// One Adam step on one parameter tensor in PyTorch's order of operations, as the CPU
// backend (core/cpu/adam.cpp):
//   m = lerp(m, g, 1-β1),  v = β2 v + (1-β2) g²,
//   p -= (lr / c1) · m / (sqrt(v) / sqrt(c2) + ε),   c_i = 1 - β_i^step (in double).
#include <cmath>
#include <vector>

#include "cuda/kernel_util.cuh"

namespace pconv {

namespace {

// torch.lerp's formula: exact at both ends of the weight.
template <typename T>
__device__ T lerp(T self, T end, T weight) {
  return dev_abs(weight) < T(0.5) ? self + weight * (end - self)
                                  : end - (end - self) * (T(1) - weight);
}

template <typename T>
__global__ void adam_kernel(T* param, const T* grad, T* m, T* v, int64_t n, T one_minus_beta1,
                            T beta2, T one_minus_beta2, T c2_sqrt, T eps, T neg_step) {
  PCONV_GRID_STRIDE(i, n) {
    const T g = grad[i];
    const T mi = lerp(m[i], g, one_minus_beta1);
    const T vi = v[i] * beta2 + one_minus_beta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    const T denom = dev_sqrt(vi) / c2_sqrt + eps;
    param[i] += neg_step * mi / denom;
  }
}

// One parameter tensor of adam_all_kernel, with its own bias corrections. Its elements are
// split into chunks of kAdamChunk, one block each, numbered from first_block.
template <typename T>
struct AdamEntry {
  T* param;
  const T* grad;
  T* m;
  T* v;
  int64_t n, first_block;
  T c2_sqrt, neg_step;
};
constexpr int64_t kAdamChunk = 4 * kThreads;

template <typename T>
__global__ void adam_all_kernel(const AdamEntry<T>* entries, int count, T one_minus_beta1, T beta2,
                                T one_minus_beta2, T eps) {
  // The last entry whose first block is at or before this one.
  const int64_t b = blockIdx.x;
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (entries[mid].first_block <= b) lo = mid;
    else hi = mid - 1;
  }
  const AdamEntry<T> e = entries[lo];
  const int64_t start = (b - e.first_block) * kAdamChunk;
  const int64_t end = start + kAdamChunk < e.n ? start + kAdamChunk : e.n;
  for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
    const T g = e.grad[i];
    const T mi = lerp(e.m[i], g, one_minus_beta1);
    const T vi = e.v[i] * beta2 + one_minus_beta2 * g * g;
    e.m[i] = mi;
    e.v[i] = vi;
    const T denom = dev_sqrt(vi) / e.c2_sqrt + eps;
    e.param[i] += e.neg_step * mi / denom;
  }
}

}  // namespace

void CudaBackend::adam_step_all(const std::vector<AdamSlot>& slots, const AdamParams& p) {
  if (slots.empty()) return;
  const DType dt = slots[0].param->dtype();
  for (const AdamSlot& s : slots) {
    check_numel("adam_step_all", *s.param, "param", *s.grad, "grad");
    check_numel("adam_step_all", *s.param, "param", *s.m, "m");
    check_numel("adam_step_all", *s.param, "param", *s.v, "v");
    if (s.step < 1) throw Error("adam_step_all: step " + std::to_string(s.step) + " is not 1-based");
    if (s.param->dtype() != dt || s.grad->dtype() != dt || s.m->dtype() != dt || s.v->dtype() != dt)
      return Backend::adam_step_all(slots, p);  // mixed dtypes: one launch per tensor
  }
  cuda_dispatch_float("adam_step_all", dt, [&](auto tag) {
    using T = decltype(tag);
    std::vector<AdamEntry<T>> entries;
    int64_t blocks = 0;
    for (const AdamSlot& s : slots) {
      const int64_t n = s.param->numel();
      if (n == 0) continue;
      const double c1 = 1.0 - std::pow(p.beta1, double(s.step));
      const double c2 = 1.0 - std::pow(p.beta2, double(s.step));
      entries.push_back({s.param->data<T>(), s.grad->data<T>(), s.m->data<T>(), s.v->data<T>(), n, blocks,
                         T(std::sqrt(c2)), T(-(p.lr / c1))});
      blocks += (n + kAdamChunk - 1) / kAdamChunk;
    }
    if (entries.empty()) return;
    // The table goes through the caching allocator: reusing it after this launch is ordered
    // on the one stream.
    const size_t bytes = entries.size() * sizeof(AdamEntry<T>);
    void* table = allocate(bytes);
    copy_from_host(table, entries.data(), bytes);
    adam_all_kernel<T><<<unsigned(blocks), kThreads, 0, stream_>>>(
        static_cast<const AdamEntry<T>*>(table), int(entries.size()), T(1.0 - p.beta1), T(p.beta2),
        T(1.0 - p.beta2), T(p.eps));
    deallocate(table, bytes);
  });
  CUDA_CHECK_LAUNCH("adam_step_all over " + std::to_string(slots.size()) + " tensors");
}

void CudaBackend::adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                            const AdamParams& p) {
  check_numel("adam_step", param, "param", grad, "grad");
  check_numel("adam_step", param, "param", m, "m");
  check_numel("adam_step", param, "param", v, "v");
  if (p.step < 1) throw Error("adam_step: step " + std::to_string(p.step) + " is not 1-based");
  const int64_t n = param.numel();
  if (n == 0) return;
  const double c1 = 1.0 - std::pow(p.beta1, double(p.step));
  const double c2 = 1.0 - std::pow(p.beta2, double(p.step));
  cuda_dispatch_float("adam_step", param.dtype(), [&](auto tag) {
    using T = decltype(tag);
    adam_kernel<T><<<blocks_for(n), kThreads, 0, stream_>>>(
        param.data<T>(), grad.data<T>(), m.data<T>(), v.data<T>(), n, T(1.0 - p.beta1),
        T(p.beta2), T(1.0 - p.beta2), T(std::sqrt(c2)), T(p.eps), T(-(p.lr / c1)));
  });
  CUDA_CHECK_LAUNCH("adam_step param " + shapes_of(param));
}

}  // namespace pconv
