#pragma once
// Define-by-run reverse-mode autograd. An op that has an input requiring grad (with grad
// mode on) records a Node: edges to its inputs and a closure that maps the output's
// gradient to one gradient per input. backward() sorts the nodes topologically (iteratively,
// so deep graphs cannot overflow the stack), runs each once, accumulates into the .grad of
// leaves, and frees the graph.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace pconv {

// Where one input's gradient goes: into another node, or into a leaf's .grad.
struct Edge {
  std::shared_ptr<Node> node;        // set when the input was produced by a recorded op
  std::shared_ptr<TensorImpl> leaf;  // set when the input is a leaf that requires grad
  bool needed() const { return node || leaf; }
};

// Returns one gradient per input (same order as the inputs); an undefined Tensor where the
// input needs none (check `needs_grad(i)` to skip the work).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

struct Node {
  std::string name;  // the op's name, for error messages
  std::vector<Edge> inputs;
  BackwardFn backward;
  bool needs_grad(size_t i) const { return i < inputs.size() && inputs[i].needed(); }
};

// Thread-local switch; NoGradGuard turns recording off for a scope.
bool grad_mode_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// For ops that overwrite their input (inference only): throws "<op>: ... grad mode" when grad
// mode is on, because an overwritten tensor could be one a recorded graph still needs.
void check_grad_mode_off(const char* op);

// True when grad mode is on and any input requires grad.
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Records `output` as produced by op `name` from `inputs` when any input requires grad.
// The closure gets a node view so it can ask which inputs need a gradient.
// Usage:
//   auto y = Tensor::empty(...); backend.kernel(...);
//   return record(y, "relu", {x}, [x](const Node& n, const Tensor& gy) { ... });
using NodeBackwardFn = std::function<std::vector<Tensor>(const Node& node, const Tensor& gy)>;
Tensor record(Tensor output, const std::string& name, const std::vector<Tensor>& inputs,
              NodeBackwardFn backward);

// Runs reverse mode from `root` seeded with `grad_output`.
void run_backward(const Tensor& root, const Tensor& grad_output);

}  // namespace pconv
