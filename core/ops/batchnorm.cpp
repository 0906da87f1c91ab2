// batch_norm: training mode (batch statistics, optional running-average update) and
// evaluation / frozen mode (running statistics), PAPER.md "BatchNorm" and "Phase 2".
#include <string>

#include "core/ops.h"

namespace pconv {

namespace {

// A per-channel vector (gamma, beta, running stats) must be C long, on x's device, of x's dtype.
void check_channel_vector(const Tensor& x, const Tensor& v, const char* name) {
  if (!v.defined()) return;
  if (v.dim() != 1 || v.size(0) != x.size(1))
    throw Error(std::string("batch_norm: ") + name + " has shape " + shape_str(v.shape()) +
                ", expected [" + std::to_string(x.size(1)) + "] for input " + shape_str(x.shape()));
  check_same_device("batch_norm", x, "x", v, name);
  check_same_dtype("batch_norm", x, "x", v, name);
}

// running = (1 - momentum)·running + momentum·batch, in place and outside the graph.
void update_running(Tensor& running, const Tensor& batch, double momentum, double batch_scale) {
  NoGradGuard no_grad;
  Tensor updated = add(mul(running.detach(), 1.0 - momentum), mul(batch, momentum * batch_scale));
  backend_of(running).copy(updated, running);
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                  Tensor& running_var, bool use_batch_stats, bool update_running_stats,
                  double momentum, double eps) {
  check_defined("batch_norm", "x", x);
  if (x.dim() < 2)
    throw Error("batch_norm: x must have rank >= 2 (N×C×...), got shape " + shape_str(x.shape()));
  check_channel_vector(x, gamma, "gamma");
  check_channel_vector(x, beta, "beta");
  check_channel_vector(x, running_mean, "running_mean");
  check_channel_vector(x, running_var, "running_var");
  const int64_t channels = x.size(1);
  const int64_t per_channel = channels == 0 ? 0 : x.numel() / channels;
  if (use_batch_stats && per_channel <= 1)
    throw Error("batch_norm: expected more than 1 value per channel when training, got input size " +
                shape_str(x.shape()));
  // As PyTorch, running statistics only move when batch statistics are used.
  const bool updating = use_batch_stats && update_running_stats;
  if ((!use_batch_stats || updating) && (!running_mean.defined() || !running_var.defined()))
    throw Error(std::string("batch_norm: running_mean and running_var are required ") +
                (use_batch_stats ? "to update them" : "in evaluation mode") + ", input " +
                shape_str(x.shape()));

  Backend& be = backend_of(x);
  const Shape cshape{channels};
  // Missing affine parameters act as gamma = 1, beta = 0.
  const Tensor g = gamma.defined() ? gamma.detach() : Tensor::ones(cshape, x.dtype(), x.device());
  const Tensor b = beta.defined() ? beta.detach() : Tensor::zeros(cshape, x.dtype(), x.device());

  Tensor mean, var;
  if (use_batch_stats) {
    mean = Tensor::empty(cshape, x.dtype(), x.device());
    var = Tensor::empty(cshape, x.dtype(), x.device());
    be.batch_norm_stats(x, mean, var);
    if (updating) {
      // PyTorch keeps the unbiased variance in running_var: var · n / (n - 1).
      const double n = double(per_channel);
      update_running(running_mean, mean, momentum, 1.0);
      update_running(running_var, var, momentum, n / (n - 1.0));
    }
  } else {
    // Copies: the running statistics may change in place before backward runs.
    mean = running_mean.detach().clone();
    var = running_var.detach().clone();
  }

  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  be.batch_norm_apply(x, mean, var, g, b, eps, y);

  const Tensor xd = x.detach();
  return record(y, "batch_norm", {x, gamma, beta},
                [xd, mean, var, g, eps, use_batch_stats](const Node& n, const Tensor& gy) {
                  Tensor gx;
                  if (n.needs_grad(0)) gx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
                  Tensor ggamma = Tensor::empty(g.shape(), g.dtype(), g.device());
                  Tensor gbeta = Tensor::empty(g.shape(), g.dtype(), g.device());
                  backend_of(xd).batch_norm_backward(gy, xd, mean, var, g, eps, use_batch_stats,
                                                     gx, ggamma, gbeta);
                  return std::vector<Tensor>{gx, n.needs_grad(1) ? ggamma : Tensor{},
                                             n.needs_grad(2) ? gbeta : Tensor{}};
                });
}

void batch_norm_eval_(Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                      const Tensor& running_var, double eps) {
  check_grad_mode_off("batch_norm_eval_");
  check_defined("batch_norm_eval_", "x", x);
  if (x.dim() < 2)
    throw Error("batch_norm_eval_: x must have rank >= 2 (N×C×...), got shape " + shape_str(x.shape()));
  for (auto [v, name] : {std::pair{&running_mean, "running_mean"}, std::pair{&running_var, "running_var"}})
    if (!v->defined()) throw Error(std::string("batch_norm_eval_: ") + name + " is required");
  check_channel_vector(x, gamma, "gamma");
  check_channel_vector(x, beta, "beta");
  check_channel_vector(x, running_mean, "running_mean");
  check_channel_vector(x, running_var, "running_var");
  const Shape cshape{x.size(1)};
  const Tensor g = gamma.defined() ? gamma : Tensor::ones(cshape, x.dtype(), x.device());
  const Tensor b = beta.defined() ? beta : Tensor::zeros(cshape, x.dtype(), x.device());
  // Each element is read before it is written, so the output may be the input.
  backend_of(x).batch_norm_apply(x, running_mean, running_var, g, b, eps, x);
}

}  // namespace pconv
