// Adam over a list of parameter pointers; the per-tensor arithmetic is Backend::adam_step.
#include "core/optim.h"

#include <cmath>
#include <set>

#include "core/autograd.h"
#include "core/backend.h"

namespace pconv {

namespace {

void check_options(const AdamOptions& o) {
  auto bad = [](const std::string& what, double value) {
    throw Error("Adam: invalid " + what + " " + std::to_string(value));
  };
  if (!(o.lr >= 0) || !std::isfinite(o.lr)) bad("learning rate", o.lr);
  if (!(o.beta1 >= 0 && o.beta1 < 1)) bad("beta1", o.beta1);
  if (!(o.beta2 >= 0 && o.beta2 < 1)) bad("beta2", o.beta2);
  if (!(o.eps >= 0) || !std::isfinite(o.eps)) bad("eps", o.eps);
}

std::string describe(const Tensor& t) {
  return shape_str(t.shape()) + " " + dtype_name(t.dtype()) + " " + device_name(t.device());
}

Tensor scalar_i64(int64_t value) {
  Tensor t = Tensor::empty({}, DType::I64, Device::CPU);
  *t.data<int64_t>() = value;
  return t;
}

int64_t read_count(const std::string& key, const Tensor& t) {
  if (!t.defined() || t.numel() != 1)
    throw Error("Adam: state '" + key + "' must hold one integer, got " +
                (t.defined() ? describe(t) : std::string("an undefined tensor")));
  Tensor c = t.device() == Device::CPU ? t : t.detach().to(Device::CPU);
  int64_t value;
  if (c.dtype() == DType::I64) {
    value = *c.data<int64_t>();
  } else {
    const double d = c.item();
    if (d != std::floor(d) || std::abs(d) > 9.0e15)
      throw Error("Adam: state '" + key + "' is " + std::to_string(d) + ", not an integer");
    value = int64_t(d);
  }
  if (value < 0) throw Error("Adam: state '" + key + "' is negative (" + std::to_string(value) + ")");
  return value;
}

// A moment tensor in the parameter's shape, dtype and device, with its own storage.
Tensor moment_like(const std::string& key, const Tensor& saved, const Tensor& param) {
  if (!saved.defined() || saved.shape() != param.shape())
    throw Error("Adam: state '" + key + "' is " +
                (saved.defined() ? shape_str(saved.shape()) : std::string("undefined")) +
                ", its parameter is " + shape_str(param.shape()));
  NoGradGuard no_grad;
  Tensor t = saved.detach().to(param.dtype()).to(param.device());
  return t.impl()->storage == saved.impl()->storage ? t.clone() : t;
}

std::vector<std::pair<std::string, Tensor*>> named_by_index(const std::vector<Tensor*>& params) {
  std::vector<std::pair<std::string, Tensor*>> named;
  for (size_t i = 0; i < params.size(); ++i) named.emplace_back(std::to_string(i), params[i]);
  return named;
}

}  // namespace

Adam::Adam(std::vector<Tensor*> params, AdamOptions options)
    : Adam(named_by_index(params), options) {}

Adam::Adam(const std::vector<std::pair<std::string, Tensor*>>& named_params, AdamOptions options)
    : options_(options) {
  check_options(options_);
  std::set<std::string> keys;
  std::set<const Tensor*> seen;
  for (const auto& [key, param] : named_params) {
    if (!param || !param->defined()) throw Error("Adam: parameter '" + key + "' is undefined");
    if (!keys.insert(key).second) throw Error("Adam: parameter name '" + key + "' appears twice");
    if (!seen.insert(param).second) throw Error("Adam: parameter '" + key + "' is listed twice");
    if (param->dtype() != DType::F32 && param->dtype() != DType::F64)
      throw Error("Adam: parameter '" + key + "' is " + describe(*param) + "; Adam updates f32 or f64");
    params_.push_back(Slot{key, param, Tensor{}, Tensor{}, 0});
  }
}

void Adam::set_lr(double lr) {
  AdamOptions o = options_;
  o.lr = lr;
  check_options(o);
  options_ = o;
}

void Adam::step() {
  ++step_count_;
  std::vector<AdamSlot> slots;
  std::vector<Tensor> grads;  // keeps each gradient handle alive for its slot
  grads.reserve(params_.size());
  for (Slot& s : params_) {
    Tensor& p = *s.param;
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    if (g.shape() != p.shape() || g.dtype() != p.dtype() || g.device() != p.device())
      throw Error("Adam: parameter '" + s.key + "' is " + describe(p) + " but its gradient is " +
                  describe(g));
    if (!s.m.defined()) {
      s.m = Tensor::zeros(p.shape(), p.dtype(), p.device());
      s.v = Tensor::zeros(p.shape(), p.dtype(), p.device());
    } else if (s.m.dtype() != p.dtype() || s.m.device() != p.device()) {
      // The module was moved (Module::to) after the optimiser was built: follow it.
      s.m = moment_like("optim.m." + s.key, s.m, p);
      s.v = moment_like("optim.v." + s.key, s.v, p);
    }
    ++s.steps;
    grads.push_back(g);
    slots.push_back({&p, &grads.back(), &s.m, &s.v, s.steps});
  }
  if (slots.empty()) return;
  AdamParams ap;
  ap.lr = options_.lr;
  ap.beta1 = options_.beta1;
  ap.beta2 = options_.beta2;
  ap.eps = options_.eps;
  // One call per device and dtype (in practice one call): the GPU updates them in one launch.
  std::vector<bool> done(slots.size(), false);
  for (size_t i = 0; i < slots.size(); ++i) {
    if (done[i]) continue;
    std::vector<AdamSlot> group;
    for (size_t j = i; j < slots.size(); ++j)
      if (!done[j] && slots[j].param->device() == slots[i].param->device() &&
          slots[j].param->dtype() == slots[i].param->dtype()) {
        group.push_back(slots[j]);
        done[j] = true;
      }
    backend_of(*slots[i].param).adam_step_all(group, ap);
  }
}

void Adam::zero_grad() {
  for (Slot& s : params_) s.param->zero_grad();
}

std::map<std::string, Tensor> Adam::state_dict() const {
  std::map<std::string, Tensor> out;
  out["optim.step"] = scalar_i64(step_count_);
  for (const Slot& s : params_) {
    if (!s.m.defined()) continue;
    out["optim.m." + s.key] = s.m.detach().clone();
    out["optim.v." + s.key] = s.v.detach().clone();
    out["optim.t." + s.key] = scalar_i64(s.steps);
  }
  return out;
}

void Adam::load_state_dict(const std::map<std::string, Tensor>& state) {
  auto step_it = state.find("optim.step");
  if (step_it == state.end()) throw Error("Adam: the state has no 'optim.step'");
  const int64_t step_count = read_count("optim.step", step_it->second);

  std::map<std::string, size_t> index;
  for (size_t i = 0; i < params_.size(); ++i) index[params_[i].key] = i;
  // Everything is checked before anything is replaced, so a bad state leaves this one intact.
  std::vector<Slot> next = params_;
  std::vector<int> found(params_.size(), 0);
  for (const auto& [key, value] : state) {
    if (key.rfind("optim.", 0) != 0 || key == "optim.step") continue;
    const std::string kind = key.substr(0, 8);  // "optim.m." / "optim.v." / "optim.t."
    auto it = key.size() > 8 ? index.find(key.substr(8)) : index.end();
    if ((kind != "optim.m." && kind != "optim.v." && kind != "optim.t.") || it == index.end())
      throw Error("Adam: unknown optimiser state '" + key + "' (" + std::to_string(params_.size()) +
                  " parameters)");
    Slot& s = next[it->second];
    if (kind == "optim.m.") s.m = moment_like(key, value, *s.param);
    if (kind == "optim.v.") s.v = moment_like(key, value, *s.param);
    if (kind == "optim.t.") s.steps = read_count(key, value);
    found[it->second] |= kind == "optim.m." ? 1 : kind == "optim.v." ? 2 : 4;
  }
  for (size_t i = 0; i < next.size(); ++i) {
    if (found[i] == 0) {
      next[i].m = next[i].v = Tensor{};
      next[i].steps = 0;
    } else if (found[i] != 7 || next[i].steps == 0) {
      throw Error("Adam: state of parameter '" + next[i].key +
                  "' needs optim.m, optim.v and a positive optim.t");
    }
  }
  params_ = std::move(next);
  step_count_ = step_count;
}

}  // namespace pconv
