#pragma once
// Tensor: a cheap handle (shared ownership) to contiguous storage with a shape, a dtype,
// a device and, for autograd, requires_grad / grad / grad_fn. Layout is contiguous NCHW;
// reshape is a view, every other op makes new storage.
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace pconv {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[1, 64, 256, 256]"
int64_t shape_numel(const Shape& s);

struct Node;

// Raw memory owned by the device's backend.
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device = Device::CPU;
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

struct TensorImpl {
  Shape shape;
  DType dtype = DType::F32;
  Device device = Device::CPU;
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<Node> grad_fn;
};

// Counter-based generator (splitmix64 of seed and element index): the same seed gives the
// same numbers on every device and thread count, and its whole state is two integers.
struct Generator {
  uint64_t seed = 0;
  uint64_t offset = 0;  // advanced by the number of values each call draws
  explicit Generator(uint64_t s = 0) : seed(s) {}
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- creation
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
                     Device device = Device::CPU);
  static Tensor rand(const Shape& shape, Generator& gen, DType dtype = DType::F32,
                     Device device = Device::CPU, double low = 0.0, double high = 1.0);
  static Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::F32,
                      Device device = Device::CPU, double mean = 0.0, double stddev = 1.0);
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape,
                            Device device = Device::CPU);
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape,
                            Device device = Device::CPU);

  // ---- properties
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int64_t dim() const { return int64_t(shape().size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return shape_numel(shape()); }
  DType dtype() const;
  Device device() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype()); }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

  // Pointer to the first element (device memory for CUDA tensors).
  void* raw_data() const;
  template <typename T>
  T* data() const { return static_cast<T*>(raw_data()); }

  // ---- views and copies
  Tensor reshape(const Shape& shape) const;  // a view; one dim may be -1; keeps the graph
  Tensor clone() const;                      // new storage, keeps the graph
  Tensor detach() const;                     // same storage, no graph
  Tensor to(DType dtype) const;              // differentiable between f32 and f64
  Tensor to(Device device) const;            // differentiable
  Tensor contiguous_copy() const { return clone(); }

  // ---- element access for tests and small host-side work (copies from the GPU if needed)
  double item() const;                                   // a one-element tensor
  double at(std::initializer_list<int64_t> idx) const;   // any dtype, as double
  void set(std::initializer_list<int64_t> idx, double value);  // CPU only
  std::vector<double> to_double_vector() const;
  std::vector<float> to_float_vector() const;

  // ---- autograd
  bool requires_grad() const { return impl_ && impl_->requires_grad; }
  Tensor& set_requires_grad(bool r = true);  // leaves only
  Tensor grad() const;                       // undefined until a backward reached it
  void zero_grad();                          // drops the gradient
  void set_grad(const Tensor& g);
  const std::shared_ptr<Node>& grad_fn() const;
  bool is_leaf() const { return !impl_ || !impl_->grad_fn; }
  void backward() const;                     // a one-element tensor: seeds with 1
  void backward(const Tensor& grad_output) const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);
std::string to_string(const Tensor& t);

// Checks shared by ops; they throw Error with the op and argument named.
void check_defined(const char* op, const char* arg, const Tensor& t);
void check_same_device(const char* op, const Tensor& a, const char* an, const Tensor& b,
                       const char* bn);
void check_same_dtype(const char* op, const Tensor& a, const char* an, const Tensor& b,
                      const char* bn);
void check_rank(const char* op, const char* arg, const Tensor& t, int64_t rank);

}  // namespace pconv
