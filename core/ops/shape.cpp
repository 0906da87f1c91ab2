// Concat, slice, pad and crop. Concat and slice are each other's adjoints; pad2d and crop2d
// are composed from them (and Tensor::full), so they need no kernel of their own and run
// on every device. Masks concatenate as lists of groups (DESIGN.md "Masks: groups").
#include <string>

#include "core/ops.h"

namespace pconv {

namespace {

int64_t normalize_dim(const char* op, int64_t dim, int64_t rank) {
  const int64_t d = dim < 0 ? dim + rank : dim;
  if (d < 0 || d >= rank)
    throw Error(std::string(op) + ": dim " + std::to_string(dim) + " is out of range for rank " +
                std::to_string(rank));
  return d;
}

}  // namespace

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  if (xs.empty()) throw Error("concat: no tensors to concatenate");
  for (size_t i = 0; i < xs.size(); ++i) check_defined("concat", "an input", xs[i]);
  const Tensor& first = xs[0];
  const int64_t d = normalize_dim("concat", dim, first.dim());
  Shape out_shape = first.shape();
  out_shape[size_t(d)] = 0;
  std::vector<int64_t> starts;
  std::vector<Shape> shapes;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    check_same_device("concat", first, "input 0", x, ("input " + std::to_string(i)).c_str());
    check_same_dtype("concat", first, "input 0", x, ("input " + std::to_string(i)).c_str());
    bool fits = x.dim() == first.dim();
    for (int64_t k = 0; fits && k < x.dim(); ++k) fits = k == d || x.size(k) == first.size(k);
    if (!fits)
      throw Error("concat: input " + std::to_string(i) + " has shape " + shape_str(x.shape()) +
                  ", input 0 has " + shape_str(first.shape()) + " (must agree except in dim " +
                  std::to_string(d) + ")");
    starts.push_back(out_shape[size_t(d)]);
    shapes.push_back(x.shape());
    out_shape[size_t(d)] += x.size(d);
  }
  Tensor y = Tensor::empty(out_shape, first.dtype(), first.device());
  Backend& be = backend_of(first);
  for (size_t i = 0; i < xs.size(); ++i) be.copy_into_slice(xs[i], y, d, starts[i]);
  return record(y, "concat", xs, [d, starts, shapes](const Node& n, const Tensor& gy) {
    std::vector<Tensor> gx(shapes.size());
    for (size_t i = 0; i < shapes.size(); ++i) {
      if (!n.needs_grad(i)) continue;
      gx[i] = Tensor::empty(shapes[i], gy.dtype(), gy.device());
      backend_of(gy).copy_from_slice(gy, d, starts[i], gx[i]);
    }
    return gx;
  });
}

Mask concat(const Mask& a, const Mask& b) {
  Mask out = a;
  out.insert(out.end(), b.begin(), b.end());
  const Tensor* ref = nullptr;
  for (size_t i = 0; i < out.size(); ++i) {
    const Tensor& m = out[i].mask;
    const std::string which = "mask group " + std::to_string(i);
    check_defined("concat (mask)", which.c_str(), m);
    if (m.dim() != 4 || m.size(1) != 1)
      throw Error("concat (mask): " + which + " must be N×1×H×W, got " + shape_str(m.shape()));
    if (out[i].channels < 0)
      throw Error("concat (mask): " + which + " has " + std::to_string(out[i].channels) +
                  " channels");
    if (!ref) {
      ref = &m;
      continue;
    }
    check_same_device("concat (mask)", *ref, "mask group 0", m, which.c_str());
    if (m.size(0) != ref->size(0) || m.size(2) != ref->size(2) || m.size(3) != ref->size(3))
      throw Error("concat (mask): " + which + " is " + shape_str(m.shape()) +
                  ", mask group 0 is " + shape_str(ref->shape()) + " (N, H, W must agree)");
  }
  return out;
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end) {
  check_defined("slice", "x", x);
  const int64_t d = normalize_dim("slice", dim, x.dim());
  if (start < 0 || end < start || end > x.size(d))
    throw Error("slice: [" + std::to_string(start) + ", " + std::to_string(end) +
                ") is not a range inside dim " + std::to_string(d) + " of " + shape_str(x.shape()));
  Shape out_shape = x.shape();
  out_shape[size_t(d)] = end - start;
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  backend_of(x).copy_from_slice(x, d, start, y);
  const Shape xs = x.shape();
  return record(y, "slice", {x}, [xs, d, start](const Node&, const Tensor& gy) {
    Tensor gx = Tensor::zeros(xs, gy.dtype(), gy.device());
    backend_of(gy).copy_into_slice(gy, gx, d, start);
    return std::vector<Tensor>{gx};
  });
}

Tensor pad2d(const Tensor& x, int64_t top, int64_t bottom, int64_t left, int64_t right,
             double value) {
  check_defined("pad2d", "x", x);
  if (x.dim() < 2)
    throw Error("pad2d: x must have rank >= 2, got shape " + shape_str(x.shape()));
  if (top < 0 || bottom < 0 || left < 0 || right < 0)
    throw Error("pad2d: padding (top " + std::to_string(top) + ", bottom " +
                std::to_string(bottom) + ", left " + std::to_string(left) + ", right " +
                std::to_string(right) + ") must not be negative, input " + shape_str(x.shape()));
  // Constant blocks above/below (dim -2), then left/right (dim -1) of the taller result.
  auto pad_along = [&](const Tensor& t, int64_t dim, int64_t before, int64_t after) {
    std::vector<Tensor> parts;
    Shape block = t.shape();
    if (before > 0) {
      block[size_t(t.dim() + dim)] = before;
      parts.push_back(Tensor::full(block, value, t.dtype(), t.device()));
    }
    parts.push_back(t);
    if (after > 0) {
      block[size_t(t.dim() + dim)] = after;
      parts.push_back(Tensor::full(block, value, t.dtype(), t.device()));
    }
    return parts.size() == 1 ? t : concat(parts, dim);
  };
  if (top == 0 && bottom == 0 && left == 0 && right == 0) return concat({x}, -1);  // a copy
  return pad_along(pad_along(x, -2, top, bottom), -1, left, right);
}

Tensor crop2d(const Tensor& x, int64_t top, int64_t left, int64_t h, int64_t w) {
  check_defined("crop2d", "x", x);
  if (x.dim() < 2)
    throw Error("crop2d: x must have rank >= 2, got shape " + shape_str(x.shape()));
  const int64_t height = x.size(-2), width = x.size(-1);
  if (top < 0 || left < 0 || h < 0 || w < 0 || top + h > height || left + w > width)
    throw Error("crop2d: window " + std::to_string(h) + "×" + std::to_string(w) + " at (" +
                std::to_string(top) + ", " + std::to_string(left) + ") does not fit input " +
                shape_str(x.shape()));
  return slice(slice(x, -2, top, top + h), -1, left, left + w);
}

}  // namespace pconv
