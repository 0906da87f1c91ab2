#pragma once
// Module: named parameters, buffers and sub-modules; train()/eval(); freezing; state_dict()
// ⇄ safetensors. Names are dotted paths ("pconv2.bn.running_mean").
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace pconv {

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // ---- traversal (recursive, in registration order)
  std::vector<std::pair<std::string, Tensor*>> named_parameters();
  std::vector<std::pair<std::string, Tensor*>> named_buffers();
  std::vector<Tensor*> parameters();                   // all parameters
  std::vector<Tensor*> trainable_parameters();         // those with requires_grad
  int64_t parameter_count();
  std::vector<std::pair<std::string, Module*>> named_modules();  // itself first, as ""

  // ---- modes
  virtual void train(bool on = true);   // recursive
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Frozen: parameters stop requiring grad; BatchNorm2d also uses and keeps its running
  // statistics (recursive).
  virtual void freeze(bool frozen = true);
  bool is_frozen() const { return frozen_; }

  // ---- state: parameters and buffers by dotted name (detached views of the live tensors)
  std::map<std::string, Tensor> state_dict();
  // Copies values in (converting dtype and device to the module's). strict: every name must
  // be present and no unknown name given. Shape mismatches throw naming the tensor and both shapes.
  // adopt: the module takes the given tensors over where their dtype and device already match
  // (no copy: loading a model then holds one copy of the weights, not two); only for a module
  // nothing else refers to yet (an optimiser would keep the old tensors).
  void load_state_dict(const std::map<std::string, Tensor>& state, bool strict = true, bool adopt = false);
  void save(const std::string& path, const std::map<std::string, std::string>& metadata = {});
  void load(const std::string& path, bool strict = true);

  void to(Device device);   // moves parameters and buffers (grads dropped)
  void to(DType dtype);
  void zero_grad();

 protected:
  Tensor& register_parameter(const std::string& name, Tensor value);  // requires_grad = true
  Tensor& register_buffer(const std::string& name, Tensor value);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    children_.emplace_back(name, module);
    return module;
  }
  virtual void on_freeze(bool) {}  // BatchNorm2d overrides

  bool training_ = true;
  bool frozen_ = false;

 private:
  // Stable addresses: parameters are held in unique_ptrs so Tensor* stay valid.
  std::vector<std::pair<std::string, std::unique_ptr<Tensor>>> params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

}  // namespace pconv
