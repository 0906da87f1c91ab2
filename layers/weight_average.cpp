#include "layers/weight_average.h"

#include <algorithm>
#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"

namespace pconv {

namespace {

bool is_floating(DType t) { return t == DType::F32 || t == DType::F64; }

}  // namespace

WeightAverage::WeightAverage(Module& module, double decay) : module_(module), decay_(decay) {
  if (!(decay >= 0 && decay < 1)) throw Error("weight average: the decay must be in [0, 1)");
  NoGradGuard no_grad;
  for (const auto& [name, t] : module_.state_dict()) average_[name] = t.clone();
}

double WeightAverage::current_decay() const {
  return std::min(decay_, double(1 + updates_) / double(10 + updates_));
}

void WeightAverage::update() {
  NoGradGuard no_grad;
  const double d = current_decay();
  for (const auto& [name, live] : module_.state_dict()) {
    Tensor& avg = average_.at(name);
    // Counts and other integer buffers follow the live module.
    avg = is_floating(live.dtype()) ? avg * d + live * (1 - d) : live.clone();
  }
  ++updates_;
}

void WeightAverage::load(const std::map<std::string, Tensor>& average, int64_t updates) {
  std::map<std::string, Tensor> next;
  for (const auto& [name, mine] : average_) {
    auto it = average.find(name);
    if (it == average.end()) throw Error("weight average: the saved average has no " + name);
    if (it->second.shape() != mine.shape())
      throw Error("weight average: " + name + " has shape " + shape_str(it->second.shape()) +
                  " in the saved average, the model's is " + shape_str(mine.shape()));
    next[name] = it->second.to(mine.dtype()).to(mine.device()).detach().clone();
  }
  if (average.size() != average_.size()) throw Error("weight average: the saved average has tensors the model has not");
  average_ = std::move(next);
  updates_ = updates;
}

AveragedWeights::AveragedWeights(Module& module, const WeightAverage& average) : module_(module) {
  NoGradGuard no_grad;
  for (const auto& [name, t] : module_.state_dict()) live_[name] = t.clone();
  module_.load_state_dict(average.state());
}

AveragedWeights::~AveragedWeights() { module_.load_state_dict(live_); }

}  // namespace pconv
