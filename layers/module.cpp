// Module: the registry of named parameters, buffers and children (layers/module.h), and the
// state_dict ⇄ safetensors round trip that checkpoints are made of (DESIGN.md "Modules and
// checkpoints").
#include "layers/module.h"

#include "core/autograd.h"
#include "core/backend.h"
#include "core/finite.h"
#include "core/io/safetensors.h"

namespace pconv {

namespace {

std::string join(const std::string& prefix, const std::string& name) {
  if (prefix.empty()) return name;
  return name.empty() ? prefix : prefix + "." + name;
}

// `t` converted to dtype/device as a fresh leaf (new storage, no graph); unchanged when it
// already matches.
void convert_leaf(Tensor& t, DType dtype, Device device, bool requires_grad) {
  if (t.dtype() == dtype && t.device() == device) return;
  Tensor out = t.detach().to(dtype).to(device).detach();
  out.set_requires_grad(requires_grad);
  t = out;
}

}  // namespace

// ---------------------------------------------------------------- traversal

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (auto& [name, child] : children_)
    for (auto& [sub, m] : child->named_modules()) out.emplace_back(join(name, sub), m);
  return out;
}

std::vector<std::pair<std::string, Tensor*>> Module::named_parameters() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (auto& [prefix, m] : named_modules())
    for (auto& [name, t] : m->params_) out.emplace_back(join(prefix, name), t.get());
  return out;
}

std::vector<std::pair<std::string, Tensor*>> Module::named_buffers() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (auto& [prefix, m] : named_modules())
    for (auto& [name, t] : m->buffers_) out.emplace_back(join(prefix, name), t.get());
  return out;
}

std::vector<Tensor*> Module::parameters() {
  std::vector<Tensor*> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<Tensor*> Module::trainable_parameters() {
  std::vector<Tensor*> out;
  for (auto& [name, t] : named_parameters())
    if (t->requires_grad()) out.push_back(t);
  return out;
}

int64_t Module::parameter_count() {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t->numel();
  return n;
}

// ---------------------------------------------------------------- modes

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::freeze(bool frozen) {
  frozen_ = frozen;
  for (auto& [name, t] : params_) t->set_requires_grad(!frozen);
  on_freeze(frozen);
  for (auto& [name, child] : children_) child->freeze(frozen);
}

// ---------------------------------------------------------------- state

std::map<std::string, Tensor> Module::state_dict() {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : named_parameters()) out[name] = t->detach();
  for (auto& [name, t] : named_buffers()) out[name] = t->detach();
  return out;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& state, bool strict, bool adopt) {
  std::vector<std::pair<std::string, Tensor*>> targets = named_parameters();
  for (auto& b : named_buffers()) targets.push_back(b);

  // Check everything before changing anything: a bad file leaves the module as it was.
  std::vector<std::pair<Tensor*, const Tensor*>> plan;
  std::map<std::string, bool> known;
  for (auto& [name, target] : targets) {
    known[name] = true;
    auto it = state.find(name);
    if (it == state.end()) {
      if (strict) throw Error("load_state_dict: missing " + name);
      continue;
    }
    const Tensor& value = it->second;
    if (!value.defined()) throw Error("load_state_dict: " + name + " is undefined");
    if (value.shape() != target->shape())
      throw Error("load_state_dict: " + name + " has shape " + shape_str(value.shape()) +
                  " in the file, the model expects " + shape_str(target->shape()));
    if (value.dtype() == DType::I64 && target->dtype() != DType::I64)
      throw Error("load_state_dict: " + name + " is i64 in the file, the model expects " +
                  dtype_name(target->dtype()));
    check_finite("load_state_dict: " + name, value);
    plan.emplace_back(target, &value);
  }
  if (strict)
    for (auto& [name, value] : state)
      if (!known.count(name)) throw Error("load_state_dict: unexpected key " + name);

  // Copy into the existing storage, so pointers held elsewhere (an optimiser) stay valid.
  NoGradGuard no_grad;
  for (auto& [target, value] : plan) {
    if (adopt && value->dtype() == target->dtype() && value->device() == target->device()) {
      const bool requires_grad = target->requires_grad();
      *target = value->detach();
      target->set_requires_grad(requires_grad);
      continue;
    }
    Tensor src = value->detach().to(target->device());
    Tensor dst = target->detach();
    backend_of(dst).copy(src, dst);
  }
}

void Module::save(const std::string& path, const std::map<std::string, std::string>& metadata) {
  save_safetensors(path, state_dict(), metadata);
}

void Module::load(const std::string& path, bool strict) {
  SafetensorsFile file = load_safetensors(path);
  try {
    load_state_dict(file.tensors, strict);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}

void Module::to(Device device) {
  NoGradGuard no_grad;
  for (auto& [prefix, m] : named_modules()) {
    for (auto& [name, t] : m->params_)
      convert_leaf(*t, t->dtype(), device, t->requires_grad());
    for (auto& [name, t] : m->buffers_) convert_leaf(*t, t->dtype(), device, false);
  }
}

void Module::to(DType dtype) {
  NoGradGuard no_grad;
  for (auto& [prefix, m] : named_modules()) {
    for (auto& [name, t] : m->params_)
      convert_leaf(*t, dtype, t->device(), t->requires_grad());
    for (auto& [name, t] : m->buffers_) convert_leaf(*t, dtype, t->device(), false);
  }
}

void Module::zero_grad() {
  for (auto& [name, t] : named_parameters()) t->zero_grad();
}

// ---------------------------------------------------------------- registration

Tensor& Module::register_parameter(const std::string& name, Tensor value) {
  if (!value.defined()) throw Error("register_parameter: " + name + " is undefined");
  Tensor leaf = value.detach();
  leaf.set_requires_grad(!frozen_);
  params_.emplace_back(name, std::make_unique<Tensor>(leaf));
  return *params_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor value) {
  if (!value.defined()) throw Error("register_buffer: " + name + " is undefined");
  buffers_.emplace_back(name, std::make_unique<Tensor>(value.detach()));
  return *buffers_.back().second;
}

}  // namespace pconv
