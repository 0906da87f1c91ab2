// Sums and means, over everything or over given dims; backward broadcasts the gradient back.
#include <algorithm>

#include "core/ops.h"

namespace pconv {

namespace {

std::vector<int64_t> normalise_dims(const char* op, const Tensor& a, std::vector<int64_t> dims) {
  const int64_t r = a.dim();
  for (auto& d : dims) {
    if (d < -r || d >= r)
      throw Error(std::string(op) + ": dim " + std::to_string(d) + " out of range for shape " +
                  shape_str(a.shape()));
    if (d < 0) d += r;
  }
  std::sort(dims.begin(), dims.end());
  dims.erase(std::unique(dims.begin(), dims.end()), dims.end());
  return dims;
}

// The gradient of a sum is the output gradient broadcast over the summed dims.
Tensor expand_as(const Tensor& g, const Shape& keep_shape, const Shape& full) {
  Tensor zeros = Tensor::zeros(full, g.dtype(), g.device());
  return add(zeros, g.reshape(keep_shape));
}

Tensor sum_impl(const char* op, const Tensor& a, const std::vector<int64_t>& dims_in, bool keepdim,
                double scale) {
  check_defined(op, "a", a);
  auto dims = normalise_dims(op, a, dims_in);
  Shape keep = a.shape(), out;
  for (auto d : dims) keep[size_t(d)] = 1;
  for (int64_t d = 0; d < a.dim(); ++d)
    if (keepdim || !std::binary_search(dims.begin(), dims.end(), d)) out.push_back(keep[size_t(d)]);
  Tensor r = Tensor::empty(keep, a.dtype(), a.device());
  backend_of(a).sum_to(a.detach(), r);
  if (scale != 1.0) backend_of(a).unary(UnaryOp::MulScalar, r, r, scale);
  Tensor y = r.reshape(out);
  return record(y, op, {a}, [keep, full = a.shape(), scale](const Node&, const Tensor& gy) {
    Tensor g = expand_as(gy, keep, full);
    return std::vector<Tensor>{scale != 1.0 ? mul(g, scale) : g};
  });
}

std::vector<int64_t> all_dims(const Tensor& a) {
  std::vector<int64_t> d(size_t(a.dim()));
  for (size_t i = 0; i < d.size(); ++i) d[i] = int64_t(i);
  return d;
}

double count_over(const Tensor& a, const std::vector<int64_t>& dims) {
  double n = 1;
  for (auto d : normalise_dims("mean", a, dims)) n *= double(a.shape()[size_t(d)]);
  return n;
}

}  // namespace

Tensor sum(const Tensor& a) { return sum_impl("sum", a, all_dims(a), false, 1.0); }
Tensor sum(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  return sum_impl("sum", a, dims, keepdim, 1.0);
}
Tensor mean(const Tensor& a) {
  check_defined("mean", "a", a);
  if (a.numel() == 0) throw Error("mean: empty tensor of shape " + shape_str(a.shape()));
  return sum_impl("mean", a, all_dims(a), false, 1.0 / double(a.numel()));
}
Tensor mean(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  check_defined("mean", "a", a);
  double n = count_over(a, dims);
  if (n == 0) throw Error("mean: empty reduction over shape " + shape_str(a.shape()));
  return sum_impl("mean", a, dims, keepdim, 1.0 / n);
}

}  // namespace pconv
