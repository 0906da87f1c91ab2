#pragma once
// The CPU backend: Eigen for GEMM, OpenMP threads, plain loops elsewhere. Its methods are
// defined across core/cpu/*.cpp, one file per kernel family.
#include "core/backend.h"

namespace pconv {

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::CPU; }
  void* allocate(size_t bytes) override;
  void deallocate(void* ptr, size_t bytes) override;
  // Tensors of 4 MiB and more on transparent huge pages (madvise); on unless PCONV_HUGE_PAGES=0.
  void set_huge_pages(bool on) { huge_pages_ = on; }
  bool huge_pages() const { return huge_pages_; }
  void copy_from_host(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void release_free_memory() override;  // malloc_trim: free pages anywhere in the heap

  void copy(const Tensor& src, Tensor& dst) override;
  void fill(Tensor& t, double value) override;
  void fill_uniform(Tensor& t, double low, double high, uint64_t seed, uint64_t offset) override;
  void fill_normal(Tensor& t, double mean, double stddev, uint64_t seed, uint64_t offset) override;

  void unary(UnaryOp op, const Tensor& x, Tensor& y, double alpha) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& y) override;
  void pointwise_grad(PointwiseGrad op, const Tensor& x, const Tensor& gy, Tensor& gx,
                      double alpha) override;
  void sum_to(const Tensor& x, Tensor& y) override;
  void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, double alpha,
            double beta) override;

  void conv2d_forward(const Tensor& x, const Tensor& w, Tensor& y, const Conv2dParams& p) override;
  void conv2d_backward_data(const Tensor& gy, const Tensor& w, Tensor& gx,
                            const Conv2dParams& p) override;
  void conv2d_backward_weight(const Tensor& gy, const Tensor& x, Tensor& gw,
                              const Conv2dParams& p) override;

  void mask_apply(const Tensor& x, const Mask& mask, Tensor& y) override;
  void pconv_count(const Mask& mask, int64_t kh, int64_t kw, const Conv2dParams& p,
                   Tensor& count) override;
  void pconv_epilogue(Tensor& y, const Tensor& count, const Tensor& bias, double window,
                      Tensor& new_mask) override;
  void pconv_grad_scale(const Tensor& gy, const Tensor& count, double window, Tensor& g) override;
  void bias_activation(Tensor& y, const Tensor& bias, Activation act, double slope) override;
  void bias_activation_backward(const Tensor& out, const Tensor& gy, Activation act, double slope, Tensor& g,
                                Tensor& gbias) override;

  void batch_norm_activation(const Tensor& x, const Tensor& mean, const Tensor& var, const Tensor& gamma,
                             const Tensor& beta, double eps, const Tensor& noise, const Tensor& strength,
                             Activation act, double slope, Tensor& y) override;
  void batch_norm_activation_backward(const Tensor& out, const Tensor& gy, const Tensor& x, const Tensor& mean,
                                      const Tensor& var, const Tensor& gamma, double eps, bool batch_stats,
                                      const Tensor& noise, Activation act, double slope, Tensor& gx,
                                      Tensor& ggamma, Tensor& gbeta, Tensor& gstrength) override;
  void batch_norm_stats(const Tensor& x, Tensor& mean, Tensor& var) override;
  void batch_norm_apply(const Tensor& x, const Tensor& mean, const Tensor& var, const Tensor& gamma,
                        const Tensor& beta, double eps, Tensor& y) override;
  void batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& mean, const Tensor& var,
                           const Tensor& gamma, double eps, bool batch_stats, Tensor& gx,
                           Tensor& ggamma, Tensor& gbeta) override;

  void upsample_nearest2x(const Tensor& x, Tensor& y) override;
  void upsample_nearest2x_backward(const Tensor& gy, Tensor& gx) override;
  void upsample_bilinear2x(const Tensor& x, Tensor& y) override;
  void upsample_bilinear2x_backward(const Tensor& gy, Tensor& gx) override;
  void max_pool2x2(const Tensor& x, Tensor& y) override;
  void max_pool2x2_backward(const Tensor& x, const Tensor& gy, Tensor& gx) override;

  void harmonic_fill(const Tensor& image, const Tensor& mask, Tensor& out,
                     const HarmonicFillParams& p) override;  // core/cpu/harmonic_fill.cpp

  void copy_into_slice(const Tensor& x, Tensor& y, int64_t dim, int64_t start) override;
  void copy_from_slice(const Tensor& x, int64_t dim, int64_t start, Tensor& y) override;

  void adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                 const AdamParams& p) override;
 private:
  bool huge_pages_ = true;
};

// Calls f(float-or-double tag) for the tensor's dtype; CPU math runs in f32 or f64 only.
template <typename F>
void dispatch_float(const char* op, DType dt, F&& f) {
  if (dt == DType::F32) {
    f(float{});
  } else if (dt == DType::F64) {
    f(double{});
  } else {
    throw Error(std::string(op) + ": the CPU backend computes in f32 or f64, got " + dtype_name(dt));
  }
}

// Bytes of tensor storage on the CPU: held now, and the most held at once since the start or
// the last reset (for tests and measurements of a pass's activations; scratch buffers inside
// kernels are not counted).
struct CpuMemoryStats {
  size_t in_use = 0;
  size_t peak_in_use = 0;
};
CpuMemoryStats cpu_memory_stats();
void cpu_reset_peak_memory();

// splitmix64: the counter-based hash behind fill_uniform / fill_normal on every device.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
// Uniform in (0, 1): 53 random bits, never exactly 0 (Box-Muller takes its log).
inline double hashed_uniform(uint64_t seed, uint64_t counter) {
  uint64_t h = splitmix64(seed * 0x2545f4914f6cdd1dull ^ splitmix64(counter));
  return (double(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

}  // namespace pconv
