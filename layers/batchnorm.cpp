#include "layers/batchnorm.h"

#include <string>

namespace pconv {

BatchNorm2d::BatchNorm2d(int64_t channels, DType dtype, Device device, double momentum, double eps)
    : momentum_(momentum), eps_(eps) {
  if (channels < 1) throw Error("BatchNorm2d: channels must be >= 1, got " + std::to_string(channels));
  weight_ = &register_parameter("weight", Tensor::ones({channels}, dtype, device));
  bias_ = &register_parameter("bias", Tensor::zeros({channels}, dtype, device));
  running_mean_ = &register_buffer("running_mean", Tensor::zeros({channels}, dtype, device));
  running_var_ = &register_buffer("running_var", Tensor::ones({channels}, dtype, device));
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  check_rank("BatchNorm2d", "x", x, 4);
  const bool batch_stats = uses_batch_stats();
  return batch_norm(x, *weight_, *bias_, *running_mean_, *running_var_, batch_stats, batch_stats,
                    momentum_, eps_, sync_);
}

void BatchNorm2d::forward_(Tensor& x) {
  check_grad_mode_off("BatchNorm2d::forward_");
  if (uses_batch_stats())
    x = forward(x);
  else
    batch_norm_eval_(x, *weight_, *bias_, *running_mean_, *running_var_, eps_);
}

Tensor BatchNorm2d::forward(const Tensor& x, const Tensor& noise, const Tensor& strength, Activation act,
                            double slope) {
  check_rank("BatchNorm2d", "x", x, 4);
  const bool batch_stats = uses_batch_stats();
  return batch_norm_activation(x, *weight_, *bias_, *running_mean_, *running_var_, batch_stats, batch_stats,
                               momentum_, eps_, noise, strength, act, slope, sync_);
}

void BatchNorm2d::forward_(Tensor& x, const Tensor& noise, const Tensor& strength, Activation act, double slope) {
  check_grad_mode_off("BatchNorm2d::forward_");
  if (uses_batch_stats())
    x = forward(x, noise, strength, act, slope);
  else
    batch_norm_activation_eval_(x, *weight_, *bias_, *running_mean_, *running_var_, eps_, noise, strength, act,
                                slope);
}

}  // namespace pconv
