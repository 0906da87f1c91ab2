#include "core/backend.h"

namespace pconv {

Backend& cpu_backend();  // core/cpu/cpu_backend.cpp
#ifdef PCONV_HAS_CUDA
// cuda/cuda_backend.cpp: nullptr with a reason when no device is usable.
Backend* cuda_backend_or_null(std::string& why_not);
#endif

namespace {
struct CudaState {
  Backend* backend = nullptr;
  std::string why_not;
};
const CudaState& cuda_state() {
  static const CudaState state = [] {
    CudaState s;
#ifdef PCONV_HAS_CUDA
    s.backend = cuda_backend_or_null(s.why_not);
#else
    s.why_not = "pconv was built without the CUDA backend (configure with -DPCONV_CUDA=ON on a machine with nvcc, cuBLAS and cuDNN)";
#endif
    return s;
  }();
  return state;
}
}  // namespace

bool cuda_available() { return cuda_state().backend != nullptr; }
std::string cuda_unavailable_reason() { return cuda_state().why_not; }

Backend& backend(Device device) {
  if (device == Device::CPU) return cpu_backend();
  const auto& s = cuda_state();
  if (!s.backend) throw Error("cuda: " + s.why_not);
  return *s.backend;
}

Backend& backend_of(const Tensor& t) { return backend(t.device()); }

namespace {
[[noreturn]] void no_bilinear(Device d) {
  throw Error(std::string(device_name(d)) + ": bilinear upsampling runs on the CPU only so far (use a model with nearest upsampling)");
}
}  // namespace

void Backend::upsample_bilinear2x(const Tensor&, Tensor&) { no_bilinear(device()); }
void Backend::upsample_bilinear2x_backward(const Tensor&, Tensor&) { no_bilinear(device()); }

// The unfused composition: a broadcast add, then the activation, both in place.
void Backend::bias_activation(Tensor& y, const Tensor& bias, Activation act, double slope) {
  if (bias.defined()) binary(BinaryOp::Add, y, bias.reshape({1, bias.size(0), 1, 1}), y);
  if (act == Activation::Relu) unary(UnaryOp::Relu, y, y, 0);
  if (act == Activation::LeakyRelu) unary(UnaryOp::LeakyRelu, y, y, slope);
}

void Backend::bias_activation_backward(const Tensor& out, const Tensor& gy, Activation act,
                                       double slope, Tensor& g, Tensor& gbias) {
  if (act == Activation::None)
    copy(gy, g);
  else
    pointwise_grad(act == Activation::Relu ? PointwiseGrad::Relu : PointwiseGrad::LeakyRelu, out, gy, g,
                   slope);
  if (!gbias.defined()) return;
  Tensor sums = gbias.reshape({1, gbias.size(0), 1, 1});
  sum_to(g, sums);
}

// The unfused composition, kernel by kernel as the UNet's layers ran them before.
void Backend::batch_norm_activation(const Tensor& x, const Tensor& mean, const Tensor& var, const Tensor& gamma,
                                    const Tensor& beta, double eps, const Tensor& noise, const Tensor& strength,
                                    Activation act, double slope, Tensor& y) {
  batch_norm_apply(x, mean, var, gamma, beta, eps, y);
  if (noise.defined()) {
    Tensor term = Tensor::empty(y.shape(), y.dtype(), y.device());
    binary(BinaryOp::Mul, noise, strength.reshape({1, strength.size(0), 1, 1}), term);
    binary(BinaryOp::Add, y, term, y);
  }
  if (act == Activation::Relu) unary(UnaryOp::Relu, y, y, 0);
  if (act == Activation::LeakyRelu) unary(UnaryOp::LeakyRelu, y, y, slope);
}

void Backend::batch_norm_activation_backward(const Tensor& out, const Tensor& gy, const Tensor& x,
                                             const Tensor& mean, const Tensor& var, const Tensor& gamma,
                                             double eps, bool batch_stats, const Tensor& noise, Activation act,
                                             double slope, Tensor& gx, Tensor& ggamma, Tensor& gbeta,
                                             Tensor& gstrength) {
  Tensor g = gy;
  if (act != Activation::None) {
    g = Tensor::empty(gy.shape(), gy.dtype(), gy.device());
    pointwise_grad(act == Activation::Relu ? PointwiseGrad::Relu : PointwiseGrad::LeakyRelu, out, gy, g, slope);
  }
  batch_norm_backward(g, x, mean, var, gamma, eps, batch_stats, gx, ggamma, gbeta);
  if (!gstrength.defined()) return;
  Tensor product = Tensor::empty(g.shape(), g.dtype(), g.device());
  binary(BinaryOp::Mul, g, noise, product);
  Tensor sums = gstrength.reshape({1, gstrength.size(0), 1, 1});
  sum_to(product, sums);
}

// Through the host (core/backend.h says why): the CPU's kernel on copies, and the result back.
void Backend::harmonic_fill(const Tensor& image, const Tensor& mask, Tensor& out, const HarmonicFillParams& p) {
  Tensor host_image = Tensor::empty(image.shape(), image.dtype(), Device::CPU);
  Tensor host_mask = Tensor::empty(mask.shape(), mask.dtype(), Device::CPU);
  copy_to_host(host_image.raw_data(), image.raw_data(), image.nbytes());
  copy_to_host(host_mask.raw_data(), mask.raw_data(), mask.nbytes());
  backend(Device::CPU).harmonic_fill(host_image, host_mask, host_image, p);
  copy_from_host(out.raw_data(), host_image.raw_data(), host_image.nbytes());
}

}  // namespace pconv
