#pragma once
// The kernels every device provides. No autograd here: ops (core/ops/*.cpp) allocate the
// outputs, call these, and record the graph. All tensors passed in are contiguous, on this
// backend's device, and (unless a kernel says otherwise) of one dtype; outputs are
// preallocated with their final shape. The CPU backend lives in core/cpu/, the CUDA one in
// cuda/ (the only place with CUDA headers).
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace pconv {

enum class UnaryOp {
  Neg,        // -x
  Abs,        // |x|
  Sign,       // -1, 0, 1
  Exp,
  Log,
  Sqrt,
  Square,
  Relu,       // max(x, 0)
  LeakyRelu,  // x > 0 ? x : alpha x
  Step,       // x > alpha ? 1 : 0   (masks: count > 0)
  AddScalar,  // x + alpha
  MulScalar,  // x * alpha
  RSubScalar, // alpha - x
  Clamp01,    // min(max(x, 0), 1)
};

enum class BinaryOp { Add, Sub, Mul, Div };

// Backward of a pointwise nonlinearity given its input x: gx = gy * f'(x).
// Relu/LeakyRelu (alpha = slope) and Abs (sign(x), 0 at 0).
enum class PointwiseGrad { Relu, LeakyRelu, Abs };

// The activation fused into a convolution's epilogue (Backend::bias_activation).
enum class Activation { None, Relu, LeakyRelu };

struct Conv2dParams {
  int64_t stride = 1;
  int64_t pad = 0;  // symmetric zero padding
};

// One group of channels sharing a mask: `mask` is N×1×H×W (1 = known, 0 = hole), same dtype
// and device as the features. A feature tensor's mask is a list of groups whose channel
// counts add up to C (DESIGN.md "Masks: groups").
struct MaskGroup {
  int64_t channels = 0;
  Tensor mask;
};
using Mask = std::vector<MaskGroup>;

struct AdamParams {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  int64_t step = 1;  // 1-based step for bias correction, already incremented
};

// One tensor of a multi-tensor Adam step; `step` is that tensor's own 1-based step count.
struct AdamSlot {
  Tensor* param;
  const Tensor* grad;
  Tensor* m;
  Tensor* v;
  int64_t step;
};

// The harmonic fill's solver settings (what the fill is: models/harmonic_fill.h; how the CPU
// solves it: core/cpu/harmonic_fill.h).
struct HarmonicFillParams {
  double tolerance = 1e-5;  // largest change of a sweep, times the value range, to stop at
  int max_sweeps = 2000;    // per level
  double omega = 1.9;       // over-relaxation factor, in (0, 2): 86 sweeps at 256² where 1.0 needs 285
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;

  // ---- memory
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
  virtual void copy_from_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void synchronize() {}
  // Gives the memory that freed tensors left behind back to the system, for a pass whose next
  // tensors are larger than the freed ones and cannot reuse them (the CPU keeps freed memory
  // in its heap, see core/cpu/cpu_backend.cpp). The default does nothing.
  virtual void release_free_memory() {}

  // dst = src converted to dst's dtype (same numel, both on this device).
  virtual void copy(const Tensor& src, Tensor& dst) = 0;
  virtual void fill(Tensor& t, double value) = 0;
  // Counter-based random numbers: element i gets hash(seed, offset + i), so every device
  // draws the same values. normal: Box-Muller of two hashed uniforms.
  virtual void fill_uniform(Tensor& t, double low, double high, uint64_t seed, uint64_t offset) = 0;
  virtual void fill_normal(Tensor& t, double mean, double stddev, uint64_t seed, uint64_t offset) = 0;

  // ---- elementwise
  virtual void unary(UnaryOp op, const Tensor& x, Tensor& y, double alpha) = 0;
  // y = a op b with numpy broadcasting of a and b to y's shape (same rank, dims 1 or equal).
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& y) = 0;
  virtual void pointwise_grad(PointwiseGrad op, const Tensor& x, const Tensor& gy, Tensor& gx,
                              double alpha) = 0;

  // ---- reductions
  // y has x's rank with some dims of size 1: y = sum of x over those dims (overwrites y).
  virtual void sum_to(const Tensor& x, Tensor& y) = 0;

  // ---- GEMM: c[b] = alpha * op(a[b]) op(b[b]) + beta * c[b]; a, b, c rank 3 [batch, rows, cols]
  // (a batch of 1 broadcasts). op = transpose when the flag is set.
  virtual void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c,
                    double alpha, double beta) = 0;

  // ---- convolution: x N×C×H×W, w K×C×kh×kw, y N×K×Ho×Wo (no bias: ops add it)
  virtual void conv2d_forward(const Tensor& x, const Tensor& w, Tensor& y, const Conv2dParams& p) = 0;
  virtual void conv2d_backward_data(const Tensor& gy, const Tensor& w, Tensor& gx,
                                    const Conv2dParams& p) = 0;
  virtual void conv2d_backward_weight(const Tensor& gy, const Tensor& x, Tensor& gw,
                                      const Conv2dParams& p) = 0;  // overwrites gw

  // ---- partial convolution pieces (PAPER.md, DESIGN.md)
  // y = x ⊙ mask, each group's N×1×H×W mask applied to its channels.
  virtual void mask_apply(const Tensor& x, const Mask& mask, Tensor& y) = 0;
  // count (N×1×Ho×Wo) = Σ_g C_g · boxsum_{kh×kw, stride, pad}(m_g): valid entries per window.
  virtual void pconv_count(const Mask& mask, int64_t kh, int64_t kw, const Conv2dParams& p,
                           Tensor& count) = 0;
  // In place on y (N×K×Ho×Wo): y = (y · window/count + bias) where count > 0, else 0;
  // new_mask (N×1×Ho×Wo) = [count > 0]. bias may be undefined. window = C_in·kh·kw.
  virtual void pconv_epilogue(Tensor& y, const Tensor& count, const Tensor& bias, double window,
                              Tensor& new_mask) = 0;
  // g = gy · window/count where count > 0, else 0 (the gradient reaching conv's output).
  virtual void pconv_grad_scale(const Tensor& gy, const Tensor& count, double window, Tensor& g) = 0;

  // ---- a convolution's epilogue, fused: one pass over y instead of a bias add and an
  // activation that each read and write a whole tensor (core/cpu/bias_activation.cpp).
  // In place on y (N×K×H×W): y = act(y + bias[k]); bias may be undefined; slope is LeakyRelu's
  // (≥ 0). The values are those of binary(Add) then unary(Relu / LeakyRelu).
  virtual void bias_activation(Tensor& y, const Tensor& bias, Activation act, double slope);
  // Its gradient from the activation's output: g = gy · act'(out) (for slope ≥ 0, out > 0 exactly
  // where the activation's input was, so the input need not be kept), and gbias (K; skipped when
  // undefined) = Σ g over N and the spatial dims. The values are those of pointwise_grad then
  // sum_to. The defaults compose those kernels (the GPU's path); the CPU fuses them.
  virtual void bias_activation_backward(const Tensor& out, const Tensor& gy, Activation act,
                                        double slope, Tensor& g, Tensor& gbias);

  // ---- BatchNorm's apply, the noise term and the activation fused (core/cpu/batchnorm_activation.cpp):
  // one pass instead of four kernels that each read and write a whole tensor. In the UNet's
  // layers (models/pconv_unet.h), x N×C×H×W, noise N×1×H×W or undefined:
  //   y = act((x - mean)·scale + beta + noise[n]·strength[c]),  scale = gamma / sqrt(var + eps)
  // with the values of batch_norm_apply, binary(Mul) of noise and strength into a tensor,
  // binary(Add) and unary(Relu / LeakyRelu): the product is rounded before it is added. y may be x.
  virtual void batch_norm_activation(const Tensor& x, const Tensor& mean, const Tensor& var,
                                     const Tensor& gamma, const Tensor& beta, double eps,
                                     const Tensor& noise, const Tensor& strength, Activation act,
                                     double slope, Tensor& y);
  // Its gradients from the output (slope ≥ 0: out > 0 exactly where the activation's input
  // was): with g = gy · act'(out), those of batch_norm_backward(g) (gx may be undefined) and
  // gstrength (C; skipped when undefined) = Σ g·noise over N, H, W, summed as sum_to sums it.
  // The defaults compose those kernels (the GPU's path); the CPU fuses them.
  virtual void batch_norm_activation_backward(const Tensor& out, const Tensor& gy, const Tensor& x,
                                              const Tensor& mean, const Tensor& var, const Tensor& gamma,
                                              double eps, bool batch_stats, const Tensor& noise,
                                              Activation act, double slope, Tensor& gx, Tensor& ggamma,
                                              Tensor& gbeta, Tensor& gstrength);

  // ---- batch norm over N,H,W per channel. mean/var are C-vectors; var is biased.
  virtual void batch_norm_stats(const Tensor& x, Tensor& mean, Tensor& var) = 0;
  // y = (x - mean) / sqrt(var + eps) * gamma + beta
  virtual void batch_norm_apply(const Tensor& x, const Tensor& mean, const Tensor& var,
                                const Tensor& gamma, const Tensor& beta, double eps, Tensor& y) = 0;
  // Gradients with batch statistics (training) or fixed statistics (evaluation / frozen).
  // ggamma, gbeta are C-vectors (overwritten); gx may be undefined when not needed.
  virtual void batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& mean,
                                   const Tensor& var, const Tensor& gamma, double eps,
                                   bool batch_stats, Tensor& gx, Tensor& ggamma, Tensor& gbeta) = 0;

  // ---- resampling
  virtual void upsample_nearest2x(const Tensor& x, Tensor& y) = 0;
  virtual void upsample_nearest2x_backward(const Tensor& gy, Tensor& gx) = 0;  // 2×2 sums
  // Bilinear ×2 with half-pixel centres, edges clamped (PyTorch's align_corners=False): per
  // axis y[2i] = ¾x[i] + ¼x[max(i-1, 0)], y[2i+1] = ¾x[i] + ¼x[min(i+1, n-1)]; and its adjoint.
  // Only the CPU has them so far (no GPU has run a kernel for them): the default throws.
  virtual void upsample_bilinear2x(const Tensor& x, Tensor& y);
  virtual void upsample_bilinear2x_backward(const Tensor& gy, Tensor& gx);
  virtual void max_pool2x2(const Tensor& x, Tensor& y) = 0;
  // Routes gy to the first maximum of each window of x (ties: the first in row-major order).
  virtual void max_pool2x2_backward(const Tensor& x, const Tensor& gy, Tensor& gx) = 0;

  // ---- harmonic fill (models/harmonic_fill.h), no backward: image and out N×C×H×W (f32 or
  // f64), mask N×1×H×W of the image's dtype (values ≥ 0.5 are known). out = image on known
  // pixels; in each (n, c) plane's holes (mask[n] < 0.5) the solution of the discrete Laplace
  // equation; a plane without a known pixel becomes 0.
  // The CPU and CUDA backends have kernels (the CUDA one gives the CPU's values bit for bit).
  // Unlike bilinear upsampling's default, which refuses, this default copies image and mask to
  // the host, runs the CPU's kernel and copies the result back: models that ship (the bundled
  // one) need the fill on every device.
  virtual void harmonic_fill(const Tensor& image, const Tensor& mask, Tensor& out,
                             const HarmonicFillParams& p);

  // ---- slices along one dim: y[.., start:start+x.size(dim), ..] = x, and the reverse.
  virtual void copy_into_slice(const Tensor& x, Tensor& y, int64_t dim, int64_t start) = 0;
  virtual void copy_from_slice(const Tensor& x, int64_t dim, int64_t start, Tensor& y) = 0;

  // ---- optimiser: one parameter tensor (all f32 or all f64)
  virtual void adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                         const AdamParams& p) = 0;
  // Every parameter at once (p.step ignored: each slot has its own). The same arithmetic as
  // adam_step on each slot in turn, which is what this default does; the GPU does it in one
  // launch instead of one per tensor.
  virtual void adam_step_all(const std::vector<AdamSlot>& slots, const AdamParams& p) {
    for (const AdamSlot& s : slots) {
      AdamParams ps = p;
      ps.step = s.step;
      adam_step(*s.param, *s.grad, *s.m, *s.v, ps);
    }
  }
};

// The backend of a device; throws a clear Error for CUDA when it was not built or no GPU is
// present.
Backend& backend(Device device);
Backend& backend_of(const Tensor& t);
bool cuda_available();             // built with CUDA and a device is present
std::string cuda_unavailable_reason();

}  // namespace pconv
