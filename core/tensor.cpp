#include "core/tensor.h"

#include <cmath>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/ops.h"

namespace pconv {

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

// IEEE half conversions (F16C would do this, but these are only for I/O and tests).
uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  int32_t exp = int32_t((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffffu;
  if (((x >> 23) & 0xff) == 0xff) return uint16_t(sign | 0x7c00u | (mant ? 0x200u : 0));
  if (exp >= 31) return uint16_t(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return uint16_t(sign);
    mant |= 0x800000u;
    uint32_t shift = uint32_t(14 - exp);
    uint32_t h = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) ++h;
    return uint16_t(sign | h);
  }
  uint32_t h = sign | (uint32_t(exp) << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;
  return uint16_t(h);
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ffu;
  uint32_t x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {
      int e = -1;
      do { ++e; mant <<= 1; } while (!(mant & 0x400u));
      x = sign | (uint32_t(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    x = sign | 0x7f800000u | (mant << 13);
  } else {
    x = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

Storage::Storage(size_t n, Device d) : bytes(n), device(d) {
  data = n ? backend(d).allocate(n) : nullptr;
}
Storage::~Storage() {
  if (data) backend(device).deallocate(data, bytes);
}

// ---------------------------------------------------------------- creation
Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  // Checked products: a shape from a file must not wrap around to a small allocation.
  int64_t bytes = int64_t(dtype_size(dtype));
  for (auto d : shape) {
    if (d < 0) throw Error("empty: negative dimension in shape " + shape_str(shape));
    if (__builtin_mul_overflow(bytes, d, &bytes))
      throw Error("empty: shape " + shape_str(shape) + " has more elements than memory can hold");
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = dtype;
  impl->device = device;
  impl->storage = std::make_shared<Storage>(size_t(bytes), device);
  return Tensor(impl);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  backend(device).fill(t, value);
  return t;
}
Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}

Tensor Tensor::rand(const Shape& shape, Generator& gen, DType dtype, Device device, double low,
                    double high) {
  Tensor t = empty(shape, dtype, device);
  backend(device).fill_uniform(t, low, high, gen.seed, gen.offset);
  gen.offset += uint64_t(t.numel());
  return t;
}

Tensor Tensor::randn(const Shape& shape, Generator& gen, DType dtype, Device device, double mean,
                     double stddev) {
  Tensor t = empty(shape, dtype, device);
  backend(device).fill_normal(t, mean, stddev, gen.seed, gen.offset);
  gen.offset += 2 * uint64_t(t.numel());  // Box-Muller draws two uniforms per value
  return t;
}

template <typename T>
static Tensor from_values(const std::vector<T>& values, const Shape& shape, DType dtype,
                          Device device) {
  if (int64_t(values.size()) != shape_numel(shape))
    throw Error("from_vector: " + std::to_string(values.size()) + " values for shape " +
                shape_str(shape));
  Tensor t = Tensor::empty(shape, dtype, Device::CPU);
  std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
  return device == Device::CPU ? t : t.to(device);
}
Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& s, Device d) {
  return from_values(v, s, DType::F32, d);
}
Tensor Tensor::from_vector(const std::vector<double>& v, const Shape& s, Device d) {
  return from_values(v, s, DType::F64, d);
}

// ---------------------------------------------------------------- properties
static const TensorImpl& checked(const std::shared_ptr<TensorImpl>& p) {
  if (!p) throw Error("tensor: use of an undefined tensor");
  return *p;
}
const Shape& Tensor::shape() const { return checked(impl_).shape; }
DType Tensor::dtype() const { return checked(impl_).dtype; }
Device Tensor::device() const { return checked(impl_).device; }
int64_t Tensor::size(int64_t d) const {
  int64_t r = dim();
  if (d < -r || d >= r)
    throw Error("size: dim " + std::to_string(d) + " out of range for shape " + shape_str(shape()));
  return shape()[size_t(d < 0 ? d + r : d)];
}
void* Tensor::raw_data() const {
  const auto& i = checked(impl_);
  return static_cast<char*>(i.storage->data) + i.offset * int64_t(dtype_size(i.dtype));
}

// ---------------------------------------------------------------- views and copies
Tensor Tensor::reshape(const Shape& shape_in) const {
  Shape s = shape_in;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      if (infer >= 0) throw Error("reshape: more than one -1 in " + shape_str(shape_in));
      infer = int64_t(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0 && known > 0) s[size_t(infer)] = numel() / known;
  if (shape_numel(s) != numel())
    throw Error("reshape: cannot view " + shape_str(shape()) + " as " + shape_str(shape_in));
  auto impl = std::make_shared<TensorImpl>(*impl_);
  impl->shape = s;
  impl->grad.reset();
  impl->grad_fn.reset();
  impl->requires_grad = false;
  Tensor out(impl);
  Shape old = shape();
  return record(out, "reshape", {*this},
                [old](const Node&, const Tensor& gy) { return std::vector<Tensor>{gy.reshape(old)}; });
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>(*impl_);
  impl->grad.reset();
  impl->grad_fn.reset();
  impl->requires_grad = false;
  return Tensor(impl);
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  backend(device()).copy(*this, out);
  return record(out, "clone", {*this},
                [](const Node&, const Tensor& gy) { return std::vector<Tensor>{gy}; });
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  Tensor out = empty(shape(), dt, device());
  backend(device()).copy(*this, out);
  DType from = dtype();
  return record(out, "to(dtype)", {*this},
                [from](const Node&, const Tensor& gy) { return std::vector<Tensor>{gy.to(from)}; });
}

Tensor Tensor::to(Device dev) const {
  if (dev == device()) return *this;
  Tensor out = empty(shape(), dtype(), dev);
  if (dev == Device::CPU)
    backend(device()).copy_to_host(out.raw_data(), raw_data(), nbytes());
  else
    backend(dev).copy_from_host(out.raw_data(), raw_data(), nbytes());
  Device from = device();
  return record(out, "to(device)", {*this},
                [from](const Node&, const Tensor& gy) { return std::vector<Tensor>{gy.to(from)}; });
}

// ---------------------------------------------------------------- element access
std::vector<double> Tensor::to_double_vector() const {
  Tensor c = device() == Device::CPU ? *this : detach().to(Device::CPU);
  if (c.dtype() != DType::F64) {
    NoGradGuard g;
    c = c.detach().to(DType::F64);
  }
  const double* p = c.data<double>();
  return std::vector<double>(p, p + c.numel());
}

std::vector<float> Tensor::to_float_vector() const {
  Tensor c = device() == Device::CPU ? *this : detach().to(Device::CPU);
  if (c.dtype() != DType::F32) {
    NoGradGuard g;
    c = c.detach().to(DType::F32);
  }
  const float* p = c.data<float>();
  return std::vector<float>(p, p + c.numel());
}

static int64_t flat_index(const Shape& shape, std::initializer_list<int64_t> idx) {
  if (idx.size() != shape.size())
    throw Error("at: " + std::to_string(idx.size()) + " indices for shape " + shape_str(shape));
  int64_t flat = 0, k = 0;
  for (int64_t i : idx) {
    if (i < 0 || i >= shape[size_t(k)])
      throw Error("at: index " + std::to_string(i) + " out of range for dim " + std::to_string(k) +
                  " of shape " + shape_str(shape));
    flat = flat * shape[size_t(k)] + i;
    ++k;
  }
  return flat;
}

static double load_as_double(const void* base, DType dt, int64_t i) {
  switch (dt) {
    case DType::F32: return static_cast<const float*>(base)[i];
    case DType::F64: return static_cast<const double*>(base)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case DType::I64: return double(static_cast<const int64_t*>(base)[i]);
  }
  return 0;
}

double Tensor::at(std::initializer_list<int64_t> idx) const {
  int64_t flat = flat_index(shape(), idx);
  if (device() != Device::CPU) return detach().to(Device::CPU).at(idx);
  return load_as_double(raw_data(), dtype(), flat);
}

double Tensor::item() const {
  if (numel() != 1) throw Error("item: tensor of shape " + shape_str(shape()) + " is not one element");
  if (device() != Device::CPU) return detach().to(Device::CPU).item();
  return load_as_double(raw_data(), dtype(), 0);
}

void Tensor::set(std::initializer_list<int64_t> idx, double v) {
  if (device() != Device::CPU) throw Error("set: only CPU tensors can be written element-wise");
  int64_t i = flat_index(shape(), idx);
  switch (dtype()) {
    case DType::F32: data<float>()[i] = float(v); break;
    case DType::F64: data<double>()[i] = v; break;
    case DType::BF16: data<uint16_t>()[i] = f32_to_bf16(float(v)); break;
    case DType::F16: data<uint16_t>()[i] = f32_to_f16(float(v)); break;
    case DType::I64: data<int64_t>()[i] = int64_t(v); break;
  }
}

// ---------------------------------------------------------------- autograd surface
Tensor& Tensor::set_requires_grad(bool r) {
  checked(impl_);
  if (impl_->grad_fn) throw Error("set_requires_grad: only leaf tensors can be marked");
  impl_->requires_grad = r;
  return *this;
}
Tensor Tensor::grad() const { return Tensor(checked(impl_).grad); }
void Tensor::zero_grad() {
  if (impl_) impl_->grad.reset();
}
void Tensor::set_grad(const Tensor& g) {
  checked(impl_);
  impl_->grad = g.impl_ptr();
}
const std::shared_ptr<Node>& Tensor::grad_fn() const { return checked(impl_).grad_fn; }

void Tensor::backward() const {
  if (numel() != 1)
    throw Error("backward: called without a gradient on a tensor of shape " + shape_str(shape()) +
                " (only one-element tensors can be seeded implicitly)");
  run_backward(*this, Tensor::ones(shape(), dtype(), device()));
}
void Tensor::backward(const Tensor& g) const { run_backward(*this, g); }

// ---------------------------------------------------------------- printing
std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "Tensor(undefined)";
  os << "Tensor(" << shape_str(t.shape()) << ", " << dtype_name(t.dtype()) << ", "
     << device_name(t.device());
  if (t.requires_grad()) os << ", requires_grad";
  os << ")\n";
  auto v = t.to_double_vector();
  int64_t last = t.dim() ? t.shape().back() : 1;
  const int64_t limit = 64;
  std::ios_base::fmtflags flags = os.flags();
  os << std::setprecision(5);
  for (int64_t i = 0; i < int64_t(v.size()) && i < limit; ++i) {
    os << (i % last == 0 ? "  [" : ", ") << v[size_t(i)];
    if (i % last == last - 1) os << "]\n";
  }
  if (int64_t(v.size()) > limit) os << "  ... (" << v.size() << " values)\n";
  os.flags(flags);
  return os;
}

std::string to_string(const Tensor& t) {
  std::ostringstream s;
  s << t;
  return s.str();
}

// ---------------------------------------------------------------- checks
void check_defined(const char* op, const char* arg, const Tensor& t) {
  if (!t.defined()) throw Error(std::string(op) + ": " + arg + " is undefined");
}
void check_same_device(const char* op, const Tensor& a, const char* an, const Tensor& b,
                       const char* bn) {
  if (a.device() != b.device())
    throw Error(std::string(op) + ": " + an + " is on " + device_name(a.device()) + ", " + bn +
                " is on " + device_name(b.device()));
}
void check_same_dtype(const char* op, const Tensor& a, const char* an, const Tensor& b,
                      const char* bn) {
  if (a.dtype() != b.dtype())
    throw Error(std::string(op) + ": " + an + " is " + dtype_name(a.dtype()) + ", " + bn + " is " +
                dtype_name(b.dtype()));
}
void check_rank(const char* op, const char* arg, const Tensor& t, int64_t rank) {
  check_defined(op, arg, t);
  if (t.dim() != rank)
    throw Error(std::string(op) + ": " + arg + " must have rank " + std::to_string(rank) +
                ", got shape " + shape_str(t.shape()));
}

}  // namespace pconv
