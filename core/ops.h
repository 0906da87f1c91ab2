#pragma once
// Differentiable ops: the whole public math API. Each family's forward and backward live
// side by side in core/ops/<family>.cpp. Inputs must share a device and dtype; errors name
// the op, the argument and the shapes.
#include <vector>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/tensor.h"

namespace pconv {

class Communicator;  // core/distributed/communicator.h

// ---- elementwise (core/ops/elementwise.cpp). Binary ops broadcast numpy-style (a dim of
// size 1, or a missing leading dim, stretches): per-channel N,C,1,1 against N,C,H,W etc.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor rsub(double s, const Tensor& a);  // s - a
Tensor neg(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor square(const Tensor& a);
Tensor relu(const Tensor& a);
Tensor leaky_relu(const Tensor& a, double slope = 0.2);
Tensor clamp01(const Tensor& a);                     // no gradient outside [0,1]
Tensor step(const Tensor& a, double threshold = 0);  // [a > threshold], no gradient
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
inline Tensor operator+(const Tensor& a, double s) { return add(a, s); }
inline Tensor operator-(const Tensor& a) { return neg(a); }

// Shape of a op b under broadcasting; throws naming `op` when they do not broadcast.
Shape broadcast_shape(const char* op, const Shape& a, const Shape& b);
// Sums g down to `shape` (the adjoint of broadcasting `shape` up to g's shape).
Tensor sum_to_shape(const Tensor& g, const Shape& shape);

// ---- reductions (core/ops/reduce.cpp)
Tensor sum(const Tensor& a);                                               // scalar, shape {}
Tensor sum(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& a);
Tensor mean(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim = false);

// ---- matrices (core/ops/matmul.cpp)
// a [M,K] · b [K,N] or batched a [B,M,K] · b [B,K,N]; the flags transpose the last two dims.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
Tensor transpose(const Tensor& a, int64_t d0, int64_t d1);  // a copy with two dims swapped

// ---- convolution and partial convolution (core/ops/conv.cpp, core/ops/pconv.cpp)
// x N×C×H×W, w K×C×kh×kw, bias K or undefined.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, int64_t stride, int64_t pad);
// act(conv2d(x, w, bias)) with the same values, the bias and activation one pass over the output
// and their gradients one pass (Backend::bias_activation); the output is kept for the gradient
// instead of the activation's input. slope: LeakyRelu's, >= 0.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, int64_t stride, int64_t pad,
              Activation act, double slope = 0.2);

struct PConvResult {
  Tensor out;     // N×K×Ho×Wo, exactly 0 in holes (bias too)
  Mask mask;      // one group of K channels: [count > 0]
};
// The paper's partial convolution (PAPER.md): features x with grouped mask, weights w
// (K×C×k×k), bias K or undefined. Masks carry no gradient.
PConvResult partial_conv2d(const Tensor& x, const Mask& mask, const Tensor& w, const Tensor& bias,
                           int64_t stride, int64_t pad);
// Expands a grouped mask to a full N×C×H×W tensor (tests and the naive reference).
Tensor mask_expand(const Mask& mask);
int64_t mask_channels(const Mask& mask);

// ---- normalisation (core/ops/batchnorm.cpp)
// Training (batch statistics; when update_running, running_* are updated in place with
// momentum and the unbiased variance, as PyTorch) or evaluation (running statistics).
// With `sync` of several ranks, the batch statistics are those of the batches of all ranks
// together (synchronised BatchNorm: forward and backward as one batch_norm over the
// concatenation, one small all-reduce each way); every rank must make the same calls.
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                  Tensor& running_var, bool use_batch_stats, bool update_running,
                  double momentum = 0.1, double eps = 1e-5, Communicator* sync = nullptr);
// act(batch_norm(x) + noise · strength) with the same values, the UNet's layers after each
// partial convolution (models/pconv_unet.h): BatchNorm's apply, the noise term and the activation
// one pass over the output, their gradients two passes (Backend::batch_norm_activation,
// core/ops/batchnorm_activation.cpp). noise: N×1×H×W without gradient, or undefined (no term;
// strength is then ignored); strength: C. The output is kept for the activation's gradient
// instead of its input. slope: LeakyRelu's, >= 0. With `sync` of several ranks it composes
// those ops (synchronised statistics need the all-reduce between the passes).
Tensor batch_norm_activation(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                             Tensor& running_var, bool use_batch_stats, bool update_running, double momentum,
                             double eps, const Tensor& noise, const Tensor& strength, Activation act,
                             double slope = 0.2, Communicator* sync = nullptr);

// ---- resampling and channels (core/ops/resample.cpp, core/ops/shape.cpp)
Tensor max_pool2d(const Tensor& x);           // 2×2, stride 2
Tensor upsample_nearest2x(const Tensor& x);   // ×2 nearest
Tensor upsample_bilinear2x(const Tensor& x);  // ×2 bilinear, half-pixel centres (Backend::upsample_bilinear2x)
enum class Upsampling { Nearest, Bilinear };
Tensor upsample2x(const Tensor& x, Upsampling mode);
Mask upsample_nearest2x(const Mask& m);       // each group's mask
Tensor concat(const std::vector<Tensor>& xs, int64_t dim = 1);
Mask concat(const Mask& a, const Mask& b);    // groups of a, then b
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end);
Tensor pad2d(const Tensor& x, int64_t top, int64_t bottom, int64_t left, int64_t right,
             double value = 0);               // constant padding of the last two dims
Tensor crop2d(const Tensor& x, int64_t top, int64_t left, int64_t h, int64_t w);

// ---- inference only: in place or fused, no graph (each throws when grad mode is on). They let
// a forward pass free an activation as soon as it is consumed instead of keeping the input and
// the output of every step (models/pconv_unet.cpp, PConvUNet::forward without grad).
void relu_(Tensor& x);                          // x = relu(x)            (core/ops/elementwise.cpp)
void leaky_relu_(Tensor& x, double slope = 0.2);
// x = batch_norm(x) with the running statistics                         (core/ops/batchnorm.cpp)
void batch_norm_eval_(Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                      const Tensor& running_var, double eps = 1e-5);
// x = act(batch_norm(x) + noise · strength) with the running statistics, one pass
// (core/ops/batchnorm_activation.cpp); noise may be undefined.
void batch_norm_activation_eval_(Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                                 const Tensor& running_var, double eps, const Tensor& noise, const Tensor& strength,
                                 Activation act, double slope = 0.2);
// partial_conv2d, with x ⊙ m written over x instead of into a copy      (core/ops/pconv.cpp)
PConvResult partial_conv2d_(Tensor& x, const Mask& mask, const Tensor& w, const Tensor& bias,
                            int64_t stride, int64_t pad);
// concat({upsample2x(low, mode), skip}, 1) in one allocation, without the ×2 intermediate
// (core/ops/resample.cpp)
Tensor upsample_concat(const Tensor& low, const Tensor& skip, Upsampling mode = Upsampling::Nearest);

}  // namespace pconv
