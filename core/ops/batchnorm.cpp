// batch_norm: training mode (batch statistics, optional running-average update) and
// evaluation / frozen mode (running statistics), PAPER.md "BatchNorm" and "Phase 2".
#include <algorithm>
#include <cmath>
#include <string>

#include "core/distributed/communicator.h"
#include "core/ops.h"
#include "core/ops/batchnorm_statistics.h"

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

// A C-vector of doubles as a tensor of `like`'s dtype and device.
Tensor channel_tensor(const std::vector<double>& values, const Tensor& like) {
  NoGradGuard no_grad;
  return Tensor::from_vector(values, {int64_t(values.size())}).to(like.dtype()).to(like.device());
}

// Synchronised BatchNorm, forward: the statistics of all ranks' batches together from each
// rank's count n_r, mean m_r and biased variance v_r (per channel):
//   mean = Σ n_r·m_r / n,   var = Σ n_r·(v_r + m_r²) / n − mean²,   n = Σ n_r
// in double; m_r² of an f32 is exact there, so the subtraction loses only ~1e-16·mean². The
// local mean and var are replaced by these; returns n.
double combine_statistics(Communicator& comm, Tensor& mean, Tensor& var, int64_t local_count) {
  const std::vector<double> m = mean.to_double_vector(), v = var.to_double_vector();
  const size_t c = m.size();
  const double n = double(local_count);
  std::vector<double> sums(1 + 2 * c);
  sums[0] = n;
  for (size_t i = 0; i < c; ++i) {
    sums[1 + i] = n * m[i];
    sums[1 + c + i] = n * (v[i] + m[i] * m[i]);
  }
  comm.allreduce_sum(sums.data(), sums.size());
  const double total = sums[0];
  std::vector<double> gm(c), gv(c);
  for (size_t i = 0; i < c; ++i) {
    gm[i] = sums[1 + i] / total;
    gv[i] = std::max(0.0, sums[1 + c + i] / total - gm[i] * gm[i]);
  }
  Backend& be = backend_of(mean);
  be.copy(channel_tensor(gm, mean), mean);
  be.copy(channel_tensor(gv, var), var);
  return total;
}

// Synchronised BatchNorm, backward. `gx` holds the fixed-statistics gradient γ·istd·gy and
// ggamma, gbeta this rank's Σ gy·x̂ and Σ gy. With the sums S_γ, S_β over all ranks and their
// n values per channel, the batch-statistics gradient (as core/cpu/batchnorm.cpp) is
//   gx − γ·istd·(S_β + x̂·S_γ)/n = gx − (x̂·a + b),  a = γ·istd·S_γ/n,  b = γ·istd·S_β/n,
// and x̂·a + b is batch_norm_apply with a, b as its affine parameters. As with data-parallel
// gradients everywhere, each rank's gx is that of its own mean loss; the caller averages the
// parameter gradients over the ranks.
Tensor all_ranks_input_grad(Communicator& comm, const Tensor& gx, const Tensor& x, const Tensor& mean,
                            const Tensor& var, const Tensor& gamma, const Tensor& ggamma, const Tensor& gbeta,
                            double count, double eps) {
  const std::vector<double> sg = ggamma.to_double_vector(), sb = gbeta.to_double_vector();
  const size_t c = sg.size();
  std::vector<double> sums(2 * c);
  std::copy(sg.begin(), sg.end(), sums.begin());
  std::copy(sb.begin(), sb.end(), sums.begin() + std::ptrdiff_t(c));
  comm.allreduce_sum(sums.data(), sums.size());
  const std::vector<double> g = gamma.to_double_vector(), v = var.to_double_vector();
  std::vector<double> a(c), b(c);
  for (size_t i = 0; i < c; ++i) {
    const double k = g[i] / std::sqrt(v[i] + eps) / count;
    a[i] = k * sums[i];
    b[i] = k * sums[c + i];
  }
  Backend& be = backend_of(x);
  Tensor correction = Tensor::empty(x.shape(), x.dtype(), x.device());
  be.batch_norm_apply(x, mean, var, channel_tensor(a, x), channel_tensor(b, x), eps, correction);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  be.binary(BinaryOp::Sub, gx, correction, out);
  return out;
}

}  // namespace

BatchNormStatistics batch_norm_statistics(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                          Tensor& running_mean, Tensor& running_var, bool use_batch_stats,
                                          bool update_running_stats, double momentum, Communicator* sync) {
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
  BatchNormStatistics st;
  // Missing affine parameters act as gamma = 1, beta = 0.
  st.gamma = gamma.defined() ? gamma.detach() : Tensor::ones(cshape, x.dtype(), x.device());
  st.beta = beta.defined() ? beta.detach() : Tensor::zeros(cshape, x.dtype(), x.device());

  // Several ranks' batches form one (eval and frozen statistics need no communication).
  st.ranks = use_batch_stats && sync && sync->size() > 1 ? sync : nullptr;
  st.count = double(per_channel);  // values per channel in the statistics
  if (use_batch_stats) {
    st.mean = Tensor::empty(cshape, x.dtype(), x.device());
    st.var = Tensor::empty(cshape, x.dtype(), x.device());
    be.batch_norm_stats(x, st.mean, st.var);
    if (st.ranks) st.count = combine_statistics(*st.ranks, st.mean, st.var, per_channel);
    if (updating) {
      // PyTorch keeps the unbiased variance in running_var: var · n / (n - 1).
      const double n = st.count;
      update_running(running_mean, st.mean, momentum, 1.0);
      update_running(running_var, st.var, momentum, n / (n - 1.0));
    }
  } else {
    // Copies: the running statistics may change in place before backward runs.
    st.mean = running_mean.detach().clone();
    st.var = running_var.detach().clone();
  }
  return st;
}

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean,
                  Tensor& running_var, bool use_batch_stats, bool update_running_stats,
                  double momentum, double eps, Communicator* sync) {
  const BatchNormStatistics st = batch_norm_statistics(x, gamma, beta, running_mean, running_var, use_batch_stats,
                                                       update_running_stats, momentum, sync);
  Backend& be = backend_of(x);
  const Tensor &mean = st.mean, &var = st.var, &g = st.gamma, &b = st.beta;
  Communicator* ranks = st.ranks;
  const double count = st.count;

  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  be.batch_norm_apply(x, mean, var, g, b, eps, y);

  const Tensor xd = x.detach();
  return record(y, "batch_norm", {x, gamma, beta},
                [xd, mean, var, g, eps, use_batch_stats, ranks, count](const Node& n, const Tensor& gy) {
                  Tensor gx;
                  if (n.needs_grad(0)) gx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
                  Tensor ggamma = Tensor::empty(g.shape(), g.dtype(), g.device());
                  Tensor gbeta = Tensor::empty(g.shape(), g.dtype(), g.device());
                  // Synchronised: this rank's sums and the fixed-statistics gx, then the
                  // all-rank correction.
                  backend_of(xd).batch_norm_backward(gy, xd, mean, var, g, eps, use_batch_stats && !ranks,
                                                     gx, ggamma, gbeta);
                  if (ranks && gx.defined())
                    gx = all_ranks_input_grad(*ranks, gx, xd, mean, var, g, ggamma, gbeta, count, eps);
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
