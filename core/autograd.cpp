#include "core/autograd.h"

#include <unordered_map>
#include <unordered_set>

#include "core/ops.h"

namespace pconv {

namespace {
thread_local bool g_grad_mode = true;
}

bool grad_mode_enabled() { return g_grad_mode; }
NoGradGuard::NoGradGuard() : previous_(g_grad_mode) { g_grad_mode = false; }
NoGradGuard::~NoGradGuard() { g_grad_mode = previous_; }

void check_grad_mode_off(const char* op) {
  if (g_grad_mode)
    throw Error(std::string(op) + ": overwrites its input, so it runs only with grad mode off (NoGradGuard)");
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_mode) return false;
  for (const auto& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Tensor record(Tensor output, const std::string& name, const std::vector<Tensor>& inputs,
              NodeBackwardFn backward) {
  if (!any_requires_grad(inputs)) return output;
  auto node = std::make_shared<Node>();
  node->name = name;
  node->inputs.reserve(inputs.size());
  for (const auto& t : inputs) {
    Edge e;
    if (t.defined() && t.requires_grad()) {
      if (t.grad_fn())
        e.node = t.grad_fn();
      else
        e.leaf = t.impl_ptr();
    }
    node->inputs.push_back(std::move(e));
  }
  // The closure must not own the node (that would be a cycle); it gets it as an argument.
  Node* raw = node.get();
  node->backward = [raw, fn = std::move(backward)](const Tensor& gy) { return fn(*raw, gy); };
  output.impl()->requires_grad = true;
  output.impl()->grad_fn = std::move(node);
  return output;
}

static void accumulate(Tensor& slot, const Tensor& g) {
  slot = slot.defined() ? add(slot, g) : g;
}

void run_backward(const Tensor& root, const Tensor& grad_output) {
  check_defined("backward", "root", root);
  if (!root.requires_grad())
    throw Error("backward: the tensor does not require grad (no input of its graph requires grad)");
  if (grad_output.shape() != root.shape())
    throw Error("backward: grad_output has shape " + shape_str(grad_output.shape()) +
                ", the tensor has " + shape_str(root.shape()));
  NoGradGuard no_grad;
  if (!root.grad_fn()) {  // a leaf
    Tensor g = root.grad();
    accumulate(g, grad_output);
    const_cast<Tensor&>(root).set_grad(g);
    return;
  }
  // Topological order by iterative post-order DFS.
  std::vector<Node*> order;
  std::unordered_set<Node*> seen;
  std::vector<std::pair<Node*, size_t>> stack{{root.grad_fn().get(), 0}};
  seen.insert(root.grad_fn().get());
  while (!stack.empty()) {
    auto& [n, i] = stack.back();
    if (i < n->inputs.size()) {
      Node* child = n->inputs[i++].node.get();
      if (child && seen.insert(child).second) stack.push_back({child, 0});
    } else {
      order.push_back(n);
      stack.pop_back();
    }
  }
  // Keep every node alive until the end even if the user dropped intermediate tensors.
  std::vector<std::shared_ptr<Node>> keep_alive;
  keep_alive.push_back(root.grad_fn());
  for (Node* n : order)
    for (auto& e : n->inputs)
      if (e.node) keep_alive.push_back(e.node);

  std::unordered_map<Node*, Tensor> grads;
  grads[root.grad_fn().get()] = grad_output;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node* n = *it;
    auto found = grads.find(n);
    if (found == grads.end()) continue;
    if (!n->backward)
      throw Error("backward: the graph through " + n->name +
                  " was freed by an earlier backward(); run the forward again");
    Tensor gy = std::move(found->second);
    grads.erase(found);
    std::vector<Tensor> gin = n->backward(gy);
    if (gin.size() != n->inputs.size())
      throw Error("backward of " + n->name + ": returned " + std::to_string(gin.size()) +
                  " gradients for " + std::to_string(n->inputs.size()) + " inputs");
    for (size_t i = 0; i < gin.size(); ++i) {
      const Edge& e = n->inputs[i];
      if (!e.needed() || !gin[i].defined()) continue;
      if (e.node) {
        accumulate(grads[e.node.get()], gin[i]);
      } else {
        Tensor leaf(e.leaf);
        if (gin[i].shape() != leaf.shape())
          throw Error("backward of " + n->name + ": gradient " + shape_str(gin[i].shape()) +
                      " for a leaf of shape " + shape_str(leaf.shape()));
        Tensor g = leaf.grad();
        accumulate(g, gin[i]);
        leaf.set_grad(g);
      }
    }
    // Free the graph as we go: saved activations are released once used.
    n->backward = nullptr;
    n->inputs.clear();
  }
}

}  // namespace pconv
