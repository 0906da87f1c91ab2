// conv2d with its bias and activation fused into one epilogue pass (Backend::bias_activation,
// core/cpu/bias_activation.cpp): against the unfused composition, bit for bit, in f32 and f64
// (the kernels do the same arithmetic in the same order), and against finite differences in f64.
#include <doctest/doctest.h>

#include <string>

#include "core/ops.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"

using namespace pconv;
using testing::check_identical;

namespace {

struct EpilogueCase {
  int64_t N, C, H, W, K, k, stride, pad;
  std::string name() const {
    return "x [" + std::to_string(N) + "," + std::to_string(C) + "," + std::to_string(H) + "," + std::to_string(W) +
           "] K " + std::to_string(K) + " " + std::to_string(k) + "x" + std::to_string(k) + " stride " +
           std::to_string(stride) + " pad " + std::to_string(pad);
  }
};

// The discriminator's 4×4 stride-2 and stride-1 layers at toy sizes, one output channel (the
// bias's sum then goes through sum_to), 1×1 outputs, batch 1, and one large enough (over 32768
// outputs) that the kernels run their planes on threads.
const std::vector<EpilogueCase> kCases = {
    {2, 3, 9, 8, 5, 4, 2, 1}, {3, 4, 7, 7, 6, 4, 1, 1}, {2, 3, 6, 5, 1, 3, 1, 1},
    {4, 2, 2, 2, 3, 4, 2, 1}, {1, 5, 8, 9, 4, 3, 1, 1}, {2, 4, 33, 31, 20, 3, 1, 1},
};

const char* act_name(Activation a) {
  return a == Activation::None ? "none" : a == Activation::Relu ? "relu" : "leaky_relu";
}

// The composition the fused op replaces.
Tensor unfused(const Tensor& x, const Tensor& w, const Tensor& b, const EpilogueCase& t, Activation act,
               double slope) {
  Tensor y = conv2d(x, w, b, t.stride, t.pad);
  if (act == Activation::Relu) return relu(y);
  if (act == Activation::LeakyRelu) return leaky_relu(y, slope);
  return y;
}

struct Grads {
  Tensor out, gx, gw, gb;
};

Grads run(bool fused, const EpilogueCase& t, DType dtype, Activation act, double slope, bool with_bias,
          uint64_t seed) {
  Generator gen(seed);
  Tensor x = Tensor::randn({t.N, t.C, t.H, t.W}, gen, dtype).set_requires_grad();
  Tensor w = Tensor::randn({t.K, t.C, t.k, t.k}, gen, dtype, Device::CPU, 0.0, 0.3).set_requires_grad();
  Tensor b = with_bias ? Tensor::randn({t.K}, gen, dtype).set_requires_grad() : Tensor();
  Grads r;
  r.out = fused ? conv2d(x, w, b, t.stride, t.pad, act, slope) : unfused(x, w, b, t, act, slope);
  const Tensor g = Tensor::randn(r.out.shape(), gen, dtype);
  r.out.backward(g);
  r.gx = x.grad(), r.gw = w.grad();
  if (with_bias) r.gb = b.grad();
  return r;
}

}  // namespace

TEST_CASE("conv2d with a fused activation: output and gradients equal the unfused composition bit for bit") {
  uint64_t seed = 7;
  for (DType dtype : {DType::F32, DType::F64})
    for (Activation act : {Activation::LeakyRelu, Activation::Relu, Activation::None})
      for (bool with_bias : {true, false})
        for (const EpilogueCase& t : kCases) {
          CAPTURE(t.name());
          CAPTURE(dtype_name(dtype));
          CAPTURE(act_name(act));
          CAPTURE(with_bias);
          const Grads fused = run(true, t, dtype, act, 0.2, with_bias, seed);
          const Grads plain = run(false, t, dtype, act, 0.2, with_bias, seed);
          ++seed;
          check_identical(fused.out, plain.out, "output");
          check_identical(fused.gx, plain.gx, "input gradient");
          check_identical(fused.gw, plain.gw, "weight gradient");
          if (with_bias) check_identical(fused.gb, plain.gb, "bias gradient");
        }
}

TEST_CASE("bias_activation: the CPU's fused kernels equal the backend's default composition bit for bit") {
  Backend& be = backend(Device::CPU);
  uint64_t seed = 40;
  for (DType dtype : {DType::F32, DType::F64})
    for (Activation act : {Activation::LeakyRelu, Activation::Relu, Activation::None})
      for (const Shape& shape : {Shape{2, 5, 7, 9}, Shape{3, 1, 4, 4}, Shape{2, 4, 1, 1}, Shape{4, 24, 33, 17}}) {
        CAPTURE(shape_str(shape));
        CAPTURE(dtype_name(dtype));
        CAPTURE(act_name(act));
        Generator gen(seed++);
        const Tensor y0 = Tensor::randn(shape, gen, dtype), gy = Tensor::randn(shape, gen, dtype);
        const Tensor bias = Tensor::randn({shape[1]}, gen, dtype);
        Tensor fused = y0.clone(), plain = y0.clone();
        be.bias_activation(fused, bias, act, 0.2);
        be.Backend::bias_activation(plain, bias, act, 0.2);  // the default: add, then activation
        check_identical(fused, plain, "forward");
        Tensor g_fused = Tensor::empty(shape, dtype), g_plain = Tensor::empty(shape, dtype);
        Tensor gb_fused = Tensor::empty({shape[1]}, dtype), gb_plain = Tensor::empty({shape[1]}, dtype);
        be.bias_activation_backward(fused, gy, act, 0.2, g_fused, gb_fused);
        be.Backend::bias_activation_backward(plain, gy, act, 0.2, g_plain, gb_plain);
        check_identical(g_fused, g_plain, "gradient");
        check_identical(gb_fused, gb_plain, "bias gradient");
        Tensor no_bias;  // not wanted: g alone
        be.bias_activation_backward(fused, gy, act, 0.2, g_fused, no_bias);
        check_identical(g_fused, g_plain, "gradient without the bias's");
      }
}

TEST_CASE("conv2d with a fused activation: f64 gradients of input, weight and bias match finite differences") {
  uint64_t seed = 300;
  for (Activation act : {Activation::LeakyRelu, Activation::Relu})
    for (const EpilogueCase& t : {EpilogueCase{2, 3, 8, 7, 4, 4, 2, 1}, EpilogueCase{1, 2, 6, 6, 3, 4, 1, 1},
                                  EpilogueCase{2, 3, 5, 6, 1, 3, 1, 1}}) {
      CAPTURE(t.name());
      CAPTURE(act_name(act));
      Tensor x = testing::rand_leaf({t.N, t.C, t.H, t.W}, seed++);
      Tensor w = testing::rand_leaf({t.K, t.C, t.k, t.k}, seed++);
      Tensor b = testing::rand_leaf({t.K}, seed++);
      auto f = [&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], t.stride, t.pad, act, 0.2); };
      auto r = testing::gradcheck(f, {x, w, b});
      CHECK_MESSAGE(r.ok, r.report);
      CHECK(r.checked > 0);
    }
}

TEST_CASE("conv2d with a fused activation: a negative leaky slope is refused") {
  Tensor x = Tensor::zeros({1, 2, 5, 5}), w = Tensor::zeros({3, 2, 3, 3});
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), 1, 1, Activation::LeakyRelu, -0.1),
                       "bias_activation: leaky_relu slope -0.100000 must be >= 0 (the gradient reads the sign of "
                       "the output)",
                       Error);
}
