#pragma once
// Adam (Kingma & Ba 2015) with PyTorch's defaults and arithmetic (torch.optim.Adam, no weight
// decay, no amsgrad). PAPER.md "Training": β 0.9/0.999, lr 2e-4 then 5e-5 for fine-tuning.
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace pconv {

struct AdamOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

class Adam {
 public:
  // The pointers must outlive the optimiser (Module keeps parameter addresses stable).
  // State keys use the index in `params`, or the name when names are given.
  explicit Adam(std::vector<Tensor*> params, AdamOptions options = {});
  // Adam({&w, &b}) would otherwise also match the named form (as a vector's iterator pair).
  explicit Adam(std::initializer_list<Tensor*> params, AdamOptions options = {})
      : Adam(std::vector<Tensor*>(params), options) {}
  explicit Adam(const std::vector<std::pair<std::string, Tensor*>>& named_params,
                AdamOptions options = {});

  // One update of every parameter that has a gradient; the others are left alone and their
  // moments do not advance (as PyTorch skips parameters whose .grad is None).
  void step();
  void zero_grad();  // drops every parameter's gradient

  void set_lr(double lr);
  double lr() const { return options_.lr; }
  const AdamOptions& options() const { return options_; }
  int64_t step_count() const { return step_count_; }  // calls of step()
  size_t size() const { return params_.size(); }

  // "optim.step" (I64 scalar), and per parameter that has been updated: "optim.m.<key>",
  // "optim.v.<key>" (its dtype) and "optim.t.<key>" (I64: its own update count, which PyTorch
  // keeps per parameter). Detached copies, safe to save while training goes on.
  std::map<std::string, Tensor> state_dict() const;
  // Reads the "optim." entries of `state` (other names are ignored, so a whole checkpoint can be
  // passed). Throws on a missing "optim.step", an unknown optim key or a shape mismatch; moments
  // are converted to each parameter's dtype and device.
  void load_state_dict(const std::map<std::string, Tensor>& state);

 private:
  struct Slot {
    std::string key;
    Tensor* param = nullptr;
    Tensor m, v;        // undefined until the first update
    int64_t steps = 0;  // updates this parameter has received
  };
  std::vector<Slot> params_;
  AdamOptions options_;
  int64_t step_count_ = 0;
};

}  // namespace pconv
