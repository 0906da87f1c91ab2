// BatchNorm, the UNet's noise term and the activation fused (core/ops.h batch_norm_activation,
// core/cpu/batchnorm_activation.cpp): against the unfused composition the UNet's layers ran
// before, bit for bit in f32 and f64 (the kernels do the same arithmetic in the same order),
// against the backend's default composition (the GPU's path), and against finite differences.
#include <doctest/doctest.h>

#include <string>

#include "core/ops.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"

using namespace pconv;
using testing::check_identical;

namespace {

const char* act_name(Activation a) {
  return a == Activation::None ? "none" : a == Activation::Relu ? "relu" : "leaky_relu";
}

// Toy shapes; one channel (the strengths' sum then goes through sum_to as one run), batch 1,
// 1×1 planes, a plane over the kernel's 512-value noise chunk and not a multiple of 8, and one
// over 32768 values so the forward runs its planes on threads.
const std::vector<Shape> kShapes = {{2, 3, 5, 7}, {3, 1, 4, 4}, {1, 4, 6, 5}, {5, 3, 1, 1},
                                    {2, 2, 33, 31}, {2, 24, 33, 17}};

// Unit Gaussian noise with about a third of it zero, as the UNet's hole_noise (zero where known).
Tensor hole_noise(const Shape& s, Generator& gen, DType dtype) {
  const Tensor noise = Tensor::randn({s[0], 1, s[2], s[3]}, gen, dtype);
  const Tensor hole = step(Tensor::rand(noise.shape(), gen, dtype), 0.33);
  return mul(noise, hole);
}

struct Inputs {
  Tensor x, gamma, beta, running_mean, running_var, noise, strength, gy;
};

Inputs make_inputs(const Shape& s, DType dtype, bool with_noise, uint64_t seed) {
  Generator gen(seed);
  Inputs in;
  in.x = Tensor::randn(s, gen, dtype, Device::CPU, 0.3, 1.7).set_requires_grad();
  in.gamma = Tensor::randn({s[1]}, gen, dtype, Device::CPU, 1.0, 0.5).set_requires_grad();
  in.beta = Tensor::randn({s[1]}, gen, dtype, Device::CPU, 0.0, 0.5).set_requires_grad();
  in.running_mean = Tensor::randn({s[1]}, gen, dtype, Device::CPU, 0.0, 0.3);
  in.running_var = Tensor::rand({s[1]}, gen, dtype, Device::CPU, 0.5, 2.0);
  if (with_noise) {
    in.noise = hole_noise(s, gen, dtype);
    in.strength = Tensor::randn({s[1]}, gen, dtype, Device::CPU, 0.0, 0.5).set_requires_grad();
  }
  in.gy = Tensor::randn(s, gen, dtype);
  return in;
}

Inputs leaves_copy(const Inputs& in) {
  Inputs c = in;
  for (Tensor* t : {&c.x, &c.gamma, &c.beta, &c.strength})
    if (t->defined()) *t = t->detach().clone().set_requires_grad();
  c.running_mean = in.running_mean.clone();
  c.running_var = in.running_var.clone();
  return c;
}

// The composition the fused op replaces (the UNet's layers before it).
Tensor unfused(Inputs& in, bool batch_stats, Activation act, double slope) {
  Tensor y = batch_norm(in.x, in.gamma, in.beta, in.running_mean, in.running_var, batch_stats, batch_stats);
  if (in.noise.defined()) y = add(y, mul(in.noise, in.strength.reshape({1, in.strength.size(0), 1, 1})));
  if (act == Activation::Relu) return relu(y);
  if (act == Activation::LeakyRelu) return leaky_relu(y, slope);
  return y;
}

Tensor fused(Inputs& in, bool batch_stats, Activation act, double slope) {
  return batch_norm_activation(in.x, in.gamma, in.beta, in.running_mean, in.running_var, batch_stats, batch_stats,
                               0.1, 1e-5, in.noise, in.strength, act, slope);
}

}  // namespace

TEST_CASE("batch_norm_activation: output, gradients and running statistics equal the unfused composition bit for bit") {
  uint64_t seed = 11;
  for (DType dtype : {DType::F32, DType::F64})
    for (bool batch_stats : {true, false})
      for (Activation act : {Activation::LeakyRelu, Activation::Relu, Activation::None})
        for (bool with_noise : {true, false})
          for (const Shape& shape : kShapes) {
            if (batch_stats && shape[0] * shape[2] * shape[3] == 1) continue;  // BatchNorm refuses it
            CAPTURE(shape_str(shape));
            CAPTURE(std::string(dtype_name(dtype)));
            CAPTURE(batch_stats);
            CAPTURE(std::string(act_name(act)));
            CAPTURE(with_noise);
            const Inputs base = make_inputs(shape, dtype, with_noise, seed++);
            Inputs a = leaves_copy(base), b = leaves_copy(base);
            const Tensor out_fused = fused(a, batch_stats, act, 0.2);
            const Tensor out_plain = unfused(b, batch_stats, act, 0.2);
            check_identical(out_fused, out_plain, "output");
            out_fused.backward(base.gy);
            out_plain.backward(base.gy);
            check_identical(a.x.grad(), b.x.grad(), "input gradient");
            check_identical(a.gamma.grad(), b.gamma.grad(), "gamma gradient");
            check_identical(a.beta.grad(), b.beta.grad(), "beta gradient");
            if (with_noise) check_identical(a.strength.grad(), b.strength.grad(), "noise strength gradient");
            check_identical(a.running_mean, b.running_mean, "running mean");
            check_identical(a.running_var, b.running_var, "running variance");
          }
}

TEST_CASE("batch_norm_activation: the CPU's fused kernels equal the backend's default composition bit for bit") {
  Backend& be = backend(Device::CPU);
  uint64_t seed = 500;
  for (DType dtype : {DType::F32, DType::F64})
    for (Activation act : {Activation::LeakyRelu, Activation::Relu, Activation::None})
      for (bool with_noise : {true, false})
        for (bool batch_stats : {true, false})
          for (const Shape& shape : kShapes) {
            CAPTURE(shape_str(shape));
            CAPTURE(std::string(dtype_name(dtype)));
            CAPTURE(std::string(act_name(act)));
            CAPTURE(with_noise);
            CAPTURE(batch_stats);
            const Inputs in = make_inputs(shape, dtype, with_noise, seed++);
            const Tensor x = in.x.detach(), g = in.gamma.detach(), b = in.beta.detach();
            const Tensor s = with_noise ? in.strength.detach() : Tensor();
            const Tensor mean = in.running_mean, var = in.running_var;
            Tensor out_fused = Tensor::empty(shape, dtype), out_plain = Tensor::empty(shape, dtype);
            be.batch_norm_activation(x, mean, var, g, b, 1e-5, in.noise, s, act, 0.2, out_fused);
            be.Backend::batch_norm_activation(x, mean, var, g, b, 1e-5, in.noise, s, act, 0.2, out_plain);
            check_identical(out_fused, out_plain, "forward");
            Tensor in_place = x.clone();
            be.batch_norm_activation(in_place, mean, var, g, b, 1e-5, in.noise, s, act, 0.2, in_place);
            check_identical(in_place, out_plain, "forward in place");

            const Shape cs{shape[1]};
            Tensor gx_f = Tensor::empty(shape, dtype), gx_p = Tensor::empty(shape, dtype);
            Tensor gg_f = Tensor::empty(cs, dtype), gg_p = Tensor::empty(cs, dtype);
            Tensor gb_f = Tensor::empty(cs, dtype), gb_p = Tensor::empty(cs, dtype);
            Tensor gs_f = with_noise ? Tensor::empty(cs, dtype) : Tensor();
            Tensor gs_p = with_noise ? Tensor::empty(cs, dtype) : Tensor();
            be.batch_norm_activation_backward(out_fused, in.gy, x, mean, var, g, 1e-5, batch_stats, in.noise, act,
                                              0.2, gx_f, gg_f, gb_f, gs_f);
            be.Backend::batch_norm_activation_backward(out_plain, in.gy, x, mean, var, g, 1e-5, batch_stats, in.noise,
                                                       act, 0.2, gx_p, gg_p, gb_p, gs_p);
            check_identical(gx_f, gx_p, "input gradient");
            check_identical(gg_f, gg_p, "gamma gradient");
            check_identical(gb_f, gb_p, "beta gradient");
            if (with_noise) check_identical(gs_f, gs_p, "noise strength gradient");
            // Neither the input's nor the strengths' gradient wanted: the parameters' alone.
            Tensor no_gx, no_gs;
            be.batch_norm_activation_backward(out_fused, in.gy, x, mean, var, g, 1e-5, batch_stats, in.noise, act,
                                              0.2, no_gx, gg_f, gb_f, no_gs);
            check_identical(gg_f, gg_p, "gamma gradient without the input's");
            check_identical(gb_f, gb_p, "beta gradient without the input's");
          }
}

TEST_CASE("batch_norm_activation: f64 gradients of input, gamma, beta and noise strength match finite differences") {
  uint64_t seed = 900;
  for (bool batch_stats : {true, false})
    for (Activation act : {Activation::LeakyRelu, Activation::Relu})
      for (bool with_noise : {true, false})
        for (const Shape& shape : {Shape{2, 3, 4, 5}, Shape{3, 2, 3, 3}}) {
          CAPTURE(shape_str(shape));
          CAPTURE(batch_stats);
          CAPTURE(std::string(act_name(act)));
          CAPTURE(with_noise);
          const Inputs in = make_inputs(shape, DType::F64, with_noise, seed++);
          std::vector<Tensor> leaves = {in.x, in.gamma, in.beta};
          if (with_noise) leaves.push_back(in.strength);
          auto f = [&](const std::vector<Tensor>& v) {
            Tensor rm = in.running_mean.clone(), rv = in.running_var.clone();
            return batch_norm_activation(v[0], v[1], v[2], rm, rv, batch_stats, false, 0.1, 1e-5, in.noise,
                                         with_noise ? v[3] : Tensor(), act, 0.2);
          };
          const auto r = testing::gradcheck(f, leaves);
          CHECK_MESSAGE(r.ok, r.report);
          CHECK(r.checked > 0);
        }
}

TEST_CASE("batch_norm_activation: refuses a negative slope, noise of the wrong shape and noise with a gradient") {
  Generator gen(1);
  Tensor x = Tensor::randn({2, 3, 4, 4}, gen);
  Tensor g = Tensor::ones({3}), b = Tensor::zeros({3}), rm = Tensor::zeros({3}), rv = Tensor::ones({3});
  CHECK_THROWS_WITH_AS(batch_norm_activation(x, g, b, rm, rv, true, true, 0.1, 1e-5, Tensor(), Tensor(),
                                             Activation::LeakyRelu, -0.1),
                       "batch_norm_activation: leaky_relu slope -0.100000 must be >= 0 (the gradient reads the sign "
                       "of the output)",
                       Error);
  CHECK_THROWS_WITH_AS(batch_norm_activation(x, g, b, rm, rv, true, true, 0.1, 1e-5, Tensor::zeros({2, 3, 4, 4}),
                                             Tensor::zeros({3}), Activation::Relu),
                       "batch_norm_activation: noise [2, 3, 4, 4] must be N×1×H×W for x [2, 3, 4, 4]", Error);
  CHECK_THROWS_WITH_AS(batch_norm_activation(x, g, b, rm, rv, true, true, 0.1, 1e-5,
                                             Tensor::zeros({2, 1, 4, 4}).set_requires_grad(), Tensor::zeros({3}),
                                             Activation::Relu),
                       "batch_norm_activation: the noise carries no gradient", Error);
}
