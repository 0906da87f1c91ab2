// batch_norm_activation: BatchNorm, the UNet's noise term and the activation as one autograd op
// over the fused kernels (Backend::batch_norm_activation), with the values of the composition
// batch_norm → add(mul(noise, strength)) → relu / leaky_relu that it replaces.
#include "core/distributed/communicator.h"
#include "core/ops.h"
#include "core/ops/batchnorm_statistics.h"

namespace pconv {

namespace {

Tensor composed(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                Tensor& running_var, bool use_batch_stats, bool update_running, double momentum, double eps,
                const Tensor& noise, const Tensor& strength, Activation act, double slope, Communicator* sync) {
  Tensor y = batch_norm(x, gamma, beta, running_mean, running_var, use_batch_stats, update_running, momentum, eps,
                        sync);
  if (noise.defined()) y = add(y, mul(noise, strength.reshape({1, strength.size(0), 1, 1})));
  if (act == Activation::Relu) return relu(y);
  if (act == Activation::LeakyRelu) return leaky_relu(y, slope);
  return y;
}

void check_noise(const char* op, const Tensor& x, const Tensor& noise, const Tensor& strength) {
  if (!noise.defined()) return;
  check_defined(op, "strength", strength);
  check_same_device(op, x, "x", noise, "noise");
  check_same_dtype(op, x, "x", noise, "noise");
  check_same_device(op, x, "x", strength, "strength");
  check_same_dtype(op, x, "x", strength, "strength");
  if (noise.requires_grad()) throw Error(std::string(op) + ": the noise carries no gradient");
  if (x.dim() != 4 || noise.shape() != Shape{x.size(0), 1, x.size(2), x.size(3)})
    throw Error(std::string(op) + ": noise " + shape_str(noise.shape()) + " must be N×1×H×W for x " +
                shape_str(x.shape()));
  if (strength.shape() != Shape{x.size(1)})
    throw Error(std::string(op) + ": strength " + shape_str(strength.shape()) + " must be [" +
                std::to_string(x.size(1)) + "] for x " + shape_str(x.shape()));
}

}  // namespace

Tensor batch_norm_activation(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                             Tensor& running_var, bool use_batch_stats, bool update_running, double momentum,
                             double eps, const Tensor& noise, const Tensor& strength, Activation act, double slope,
                             Communicator* sync) {
  check_defined("batch_norm_activation", "x", x);
  check_rank("batch_norm_activation", "x", x, 4);
  check_noise("batch_norm_activation", x, noise, strength);
  if (use_batch_stats && sync && sync->size() > 1)
    return composed(x, gamma, beta, running_mean, running_var, use_batch_stats, update_running, momentum, eps, noise,
                    strength, act, slope, sync);
  const BatchNormStatistics st = batch_norm_statistics(x, gamma, beta, running_mean, running_var, use_batch_stats,
                                                       update_running, momentum, nullptr);
  Backend& be = backend_of(x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  const Tensor nd = noise.defined() ? noise.detach() : Tensor();
  const Tensor sd = noise.defined() ? strength.detach() : Tensor();
  be.batch_norm_activation(x, st.mean, st.var, st.gamma, st.beta, eps, nd, sd, act, slope, y);

  const Tensor xd = x.detach(), saved_out = y.detach();
  return record(y, "batch_norm_activation", {x, gamma, beta, noise.defined() ? strength : Tensor()},
                [xd, saved_out, nd, st, eps, use_batch_stats, act, slope](const Node& n, const Tensor& gy) {
                  const Tensor& g = st.gamma;
                  std::vector<Tensor> grads(4);
                  if (n.needs_grad(0)) grads[0] = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
                  Tensor ggamma = Tensor::empty(g.shape(), g.dtype(), g.device());
                  Tensor gbeta = Tensor::empty(g.shape(), g.dtype(), g.device());
                  if (n.needs_grad(3)) grads[3] = Tensor::empty(g.shape(), g.dtype(), g.device());
                  backend_of(xd).batch_norm_activation_backward(saved_out, gy, xd, st.mean, st.var, g, eps,
                                                                use_batch_stats, nd, act, slope, grads[0], ggamma,
                                                                gbeta, grads[3]);
                  if (n.needs_grad(1)) grads[1] = ggamma;
                  if (n.needs_grad(2)) grads[2] = gbeta;
                  return grads;
                });
}

void batch_norm_activation_eval_(Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                                 const Tensor& running_var, double eps, const Tensor& noise, const Tensor& strength,
                                 Activation act, double slope) {
  check_grad_mode_off("batch_norm_activation_eval_");
  check_defined("batch_norm_activation_eval_", "x", x);
  check_rank("batch_norm_activation_eval_", "x", x, 4);
  check_noise("batch_norm_activation_eval_", x, noise, strength);
  for (const Tensor* v : {&gamma, &beta, &running_mean, &running_var})
    if (!v->defined() || v->shape() != Shape{x.size(1)})
      throw Error("batch_norm_activation_eval_: gamma, beta and the running statistics must be [" +
                  std::to_string(x.size(1)) + "] for x " + shape_str(x.shape()));
  // Each element is read before it is written, so the output may be the input.
  backend_of(x).batch_norm_activation(x, running_mean, running_var, gamma, beta, eps, noise, strength, act, slope, x);
}

}  // namespace pconv
