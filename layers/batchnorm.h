#pragma once
// BatchNorm2d (PAPER.md "BatchNorm": eps 1e-5, momentum 0.1, affine, unbiased variance in the
// running estimate). Parameters `weight` (γ, ones) and `bias` (β, zeros); buffers
// `running_mean` (zeros) and `running_var` (ones).
//
// Which statistics normalise the batch:
//   training, default             → batch statistics, running statistics updated
//   eval()                        → running statistics, not updated
//   freeze() (the whole layer)    → running statistics, not updated; γ, β stop training
//   set_use_running_stats(true)   → running statistics, not updated; γ, β keep training
// The last is the paper's fine-tune phase (PAPER.md "Phase 2": encoder BatchNorms use running
// statistics and do not update them, while the affine parameters still learn, as in the
// authors' code where only the BN layers are put in eval mode). It is separate from freeze()
// because freezing also stops γ and β.
//
// set_sync(comm) with several ranks: batch statistics over the batches of all ranks together
// (synchronised BatchNorm, core/ops.h batch_norm), so N ranks train exactly as one process
// with their batches concatenated.
#include "core/ops.h"
#include "layers/module.h"

namespace pconv {

class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, DType dtype = DType::F32, Device device = Device::CPU,
                       double momentum = 0.1, double eps = 1e-5);

  Tensor forward(const Tensor& x);
  // Inference (grad mode off): normalises x in place with the running statistics; with batch
  // statistics (training mode) x is replaced by forward(x), as those need the whole batch first.
  void forward_(Tensor& x);
  // act(forward(x) + noise · strength) with the same values in one fused op
  // (core/ops.h batch_norm_activation): the UNet's layers. noise N×1×H×W or undefined.
  Tensor forward(const Tensor& x, const Tensor& noise, const Tensor& strength, Activation act, double slope);
  // Its inference form, in place on x (grad mode off).
  void forward_(Tensor& x, const Tensor& noise, const Tensor& strength, Activation act, double slope);

  void set_use_running_stats(bool on) { use_running_stats_ = on; }
  bool uses_running_stats() const { return use_running_stats_; }
  // True when the next forward normalises with batch statistics (and updates the running ones).
  bool uses_batch_stats() const { return is_training() && !is_frozen() && !use_running_stats_; }
  // The ranks whose batches share the statistics (null: this process's batch alone). Not owned.
  void set_sync(Communicator* ranks) { sync_ = ranks; }
  Communicator* sync() const { return sync_; }

  const Tensor& weight() const { return *weight_; }
  const Tensor& bias() const { return *bias_; }
  const Tensor& running_mean() const { return *running_mean_; }
  const Tensor& running_var() const { return *running_var_; }
  int64_t channels() const { return weight_->size(0); }
  double momentum() const { return momentum_; }
  double eps() const { return eps_; }

 private:
  Tensor *weight_, *bias_, *running_mean_, *running_var_;
  double momentum_, eps_;
  bool use_running_stats_ = false;
  Communicator* sync_ = nullptr;
};

}  // namespace pconv
