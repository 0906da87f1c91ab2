#include "tests/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/autograd.h"
#include "core/ops.h"

namespace pconv::testing {

static double dot(const Tensor& a, const std::vector<double>& g) {
  auto v = a.to_double_vector();
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i) s += v[i] * g[i];
  return s;
}

GradcheckResult gradcheck(const GradFn& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& o) {
  GradcheckResult r;
  for (const auto& t : inputs)
    if (t.defined() && (t.device() != Device::CPU || t.dtype() != DType::F64))
      throw Error("gradcheck: inputs must be CPU f64 tensors");
  for (const auto& t : inputs)
    if (t.defined()) const_cast<Tensor&>(t).zero_grad();

  Tensor out = f(inputs);
  Generator gen(o.seed);
  Tensor g = Tensor::rand(out.shape(), gen, DType::F64, Device::CPU, -1.0, 1.0);
  std::vector<double> gv = g.to_double_vector();
  out.backward(g);

  std::ostringstream rep;
  int mismatches = 0;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    Tensor ga = x.grad();
    std::vector<double> analytic =
        ga.defined() ? ga.to_double_vector() : std::vector<double>(size_t(x.numel()), 0.0);
    double* p = x.data<double>();
    const int64_t n = x.numel();
    const int64_t stride = std::max<int64_t>(1, n / std::max<int64_t>(1, o.max_checks_per_input));
    for (int64_t i = 0; i < n; i += stride) {
      const double saved = p[i];
      double lp, lm;
      {
        NoGradGuard ng;
        p[i] = saved + o.eps;
        lp = dot(f(inputs), gv);
        p[i] = saved - o.eps;
        lm = dot(f(inputs), gv);
      }
      p[i] = saved;
      const double numeric = (lp - lm) / (2 * o.eps);
      const double a = analytic[size_t(i)];
      const double err = std::abs(a - numeric);
      const double scale = std::max(std::abs(a), std::abs(numeric));
      r.max_abs_err = std::max(r.max_abs_err, err);
      if (scale > 0) r.max_rel_err = std::max(r.max_rel_err, err / scale);
      ++r.checked;
      if (err > o.atol + o.rtol * scale) {
        r.ok = false;
        if (mismatches++ < 8)
          rep << "input " << k << " [" << i << "]: analytic " << a << " numeric " << numeric << "\n";
      }
    }
  }
  rep << "checked " << r.checked << " elements, max abs err " << r.max_abs_err
      << ", max rel err " << r.max_rel_err;
  r.report = rep.str();
  return r;
}

Tensor rand_leaf(const Shape& shape, uint64_t seed, double low, double high) {
  Generator gen(seed);
  Tensor t = Tensor::rand(shape, gen, DType::F64, Device::CPU, low, high);
  t.set_requires_grad(true);
  return t;
}

double max_rel_diff(const Tensor& a, const Tensor& b) {
  auto va = a.to_double_vector(), vb = b.to_double_vector();
  if (va.size() != vb.size())
    throw Error("max_rel_diff: shapes " + shape_str(a.shape()) + " and " + shape_str(b.shape()));
  double m = 0, scale = 1;
  for (double v : vb) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < va.size(); ++i) m = std::max(m, std::abs(va[i] - vb[i]));
  return m / scale;
}

}  // namespace pconv::testing
