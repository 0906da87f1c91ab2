#pragma once
// The one finite-difference gradient checker every op, layer, loss and model test calls.
// loss = Σ f(inputs) ⊙ g with a fixed random g, so a single backward covers every input;
// the numeric gradient is the central difference of that loss in f64.
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace pconv::testing {

struct GradcheckOptions {
  double eps = 1e-6;    // central-difference step
  double rtol = 1e-6;   // pass when |analytic - numeric| <= atol + rtol * max(|a|, |n|)
  double atol = 1e-8;
  uint64_t seed = 1234;
  int64_t max_checks_per_input = 400;  // larger inputs are sampled at evenly spaced elements
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_err = 0, max_rel_err = 0;
  int64_t checked = 0;
  std::string report;  // the first mismatches, "input 0 [17]: analytic 0.1 numeric 0.2"
};

using GradFn = std::function<Tensor(const std::vector<Tensor>&)>;

// `inputs` are CPU f64 tensors; those with requires_grad() are checked, the rest are held
// fixed (masks, running statistics). f must be deterministic.
GradcheckResult gradcheck(const GradFn& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = {});

// A CPU f64 leaf filled with uniform values in [low, high) that requires grad.
Tensor rand_leaf(const Shape& shape, uint64_t seed, double low = -1, double high = 1);

// max |a - b| / max(1, max |b|): the relative error used by forward tests.
double max_rel_diff(const Tensor& a, const Tensor& b);

}  // namespace pconv::testing
