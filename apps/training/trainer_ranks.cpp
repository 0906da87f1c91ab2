// The trainer across ranks (apps/training/trainer.h, core/distributed/communicator.h): the check that all
// ranks hold one state, and the gradient average of a step.
#include <cstdio>

#include "apps/training/trainer.h"

namespace pconv {

void Trainer::check_ranks_agree(const std::string& when, const std::string& advice) {
  if (comm_.size() == 1) return;
  // Everything the next steps depend on: position, data, every option a checkpoint saves,
  // the learning rates, weights, statistics, Adam.
  char lrs[64];
  std::snprintf(lrs, sizeof lrs, "%.17g|%.17g", adam_->lr(), opt_.d_lr);
  std::string text = std::to_string(step_) + "|" + data_->state().to_string() + "|" + saved_options() + "|" + lrs;
  for (const std::string& f : data_->files()) text += "|" + f;
  std::vector<const Tensor*> tensors;
  const auto model_state = model_->state_dict();
  const auto adam_state = adam_->state_dict();
  const auto disc_state = disc_ ? disc_->state_dict() : std::map<std::string, Tensor>{};
  const auto d_adam_state = d_adam_ ? d_adam_->state_dict() : std::map<std::string, Tensor>{};
  for (const auto* state : {&model_state, &adam_state, &disc_state, &d_adam_state})
    for (const auto& [name, t] : *state) {
      text += "|" + name;
      tensors.push_back(&t);
    }
  const uint64_t fingerprint = hash_tensors(tensors, hash_bytes(text.data(), text.size(), 0));
  const std::vector<int> differing = ranks_differing_from_root(comm_, fingerprint);
  if (differing.empty()) return;
  std::string list;
  for (int r : differing) list += (list.empty() ? "" : ", ") + std::to_string(r);
  throw CollectiveError("rank" + std::string(differing.size() > 1 ? "s " : " ") + list + " of " +
                            std::to_string(comm_.size()) + " hold" + (differing.size() > 1 ? "" : "s") +
                            " another state than rank 0 at " + when + " (step, data, options, weights or Adam): " +
                            advice,
                        comm_.rank());
}

void Trainer::average_gradients(Module& module) {
  if (comm_.size() == 1) return;
  std::vector<Tensor> grads;
  for (Tensor* p : module.parameters())
    if (Tensor g = p->grad(); g.defined()) grads.push_back(g);
  std::vector<Tensor*> pointers;
  for (Tensor& g : grads) pointers.push_back(&g);
  comm_.allreduce_mean(pointers);
}

}  // namespace pconv
