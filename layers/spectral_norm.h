#pragma once
// Spectral normalisation (Miyato et al. 2018): a weight W (K×…) is used as W / σ(W), σ the
// largest singular value of W reshaped to K×(rest), estimated by power iteration. Its vectors
// u (K) and v (rest) are buffers: one power iteration per training step moves them
// (power_iterate, no gradient), and σ = uᵀ W v is then differentiated with u and v held
// constant, as PyTorch's torch.nn.utils.spectral_norm does.
#include "core/ops.h"
#include "layers/module.h"

namespace pconv {

// W / (uᵀ W v), differentiable in w; u (K) and v (numel/K) are constants.
Tensor spectral_normalize(const Tensor& w, const Tensor& u, const Tensor& v);
// σ = uᵀ W v as a scalar tensor (shape {}), differentiable in w.
Tensor spectral_sigma(const Tensor& w, const Tensor& u, const Tensor& v);
// One power iteration in place, no gradient: v = normalise(Wᵀu), u = normalise(W v).
void power_iteration(const Tensor& w, Tensor& u, Tensor& v);

// A convolution whose weight is spectrally normalised: the discriminator's layer.
// Checkpoint names: weight, bias, weight_u, weight_v.
class SNConv2d : public Module {
 public:
  SNConv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride, int64_t pad,
           Generator& gen, DType dtype = DType::F32, Device device = Device::CPU);

  Tensor forward(const Tensor& x) const;
  // act(forward(x)), the bias and activation fused into the convolution's epilogue (same values).
  Tensor forward(const Tensor& x, Activation act, double slope = 0.2) const;
  void power_iterate() { power_iteration(*weight_, *u_, *v_); }

  const Tensor& weight() const { return *weight_; }
  const Tensor& u() const { return *u_; }
  const Tensor& v() const { return *v_; }
  Tensor normalized_weight() const { return spectral_normalize(*weight_, *u_, *v_); }

 private:
  Tensor *weight_ = nullptr, *bias_ = nullptr, *u_ = nullptr, *v_ = nullptr;
  int64_t stride_, pad_;
};

}  // namespace pconv
