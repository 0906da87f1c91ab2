#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "core/backend.h"
#include "core/io/safetensors.h"
#include "core/optim.h"
#include "tests/test_util.h"

using namespace pconv;

namespace {

// A second Adam, written from the paper's Algorithm 1 with m̂ and v̂ spelled out, in double.
struct ReferenceAdam {
  double lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  std::vector<std::vector<double>> m, v;
  std::vector<int> t;
  ReferenceAdam(double lr_, size_t n) : lr(lr_), m(n), v(n), t(n, 0) {}
  void step(size_t i, std::vector<double>& p, const std::vector<double>& g) {
    if (m[i].empty()) m[i].assign(p.size(), 0.0), v[i].assign(p.size(), 0.0);
    ++t[i];
    for (size_t j = 0; j < p.size(); ++j) {
      m[i][j] = beta1 * m[i][j] + (1 - beta1) * g[j];
      v[i][j] = beta2 * v[i][j] + (1 - beta2) * g[j] * g[j];
      const double m_hat = m[i][j] / (1 - std::pow(beta1, t[i]));
      const double v_hat = v[i][j] / (1 - std::pow(beta2, t[i]));
      p[j] -= lr * m_hat / (std::sqrt(v_hat) + eps);
    }
  }
};

std::string bytes_of(const Tensor& t) {
  Tensor c = t.device() == Device::CPU ? t : t.detach().to(Device::CPU);
  return std::string(static_cast<const char*>(c.raw_data()), c.nbytes());
}

// The gradient of parameter i at step s: reproducible, so two runs can be compared.
Tensor grad_for(const Tensor& p, size_t i, int s) {
  Generator g(1000 * uint64_t(s) + i);
  return Tensor::randn(p.shape(), g, p.dtype(), p.device(), 0.0, 0.5 + double(i));
}

}  // namespace

TEST_CASE("optim: Adam matches three steps worked out by hand") {
  const double lr = 0.01, eps = 1e-8;
  const std::vector<double> p0 = {0.5, -1.0, 2.0, 0.0};
  const std::vector<std::vector<double>> g = {
      {0.1, -0.2, 0.3, 1e-3}, {-0.4, 0.05, 0.3, 0.0}, {0.2, -0.1, -0.6, 2.0}};
  Tensor p = Tensor::from_vector(p0, {2, 2});
  p.set_requires_grad();
  Adam adam({&p}, AdamOptions{lr, 0.9, 0.999, eps});

  // Step 1: m = 0.1 g1, v = 0.001 g1², c1 = 0.1, c2 = 0.001, so m̂ = g1, v̂ = g1²:
  // every element moves by lr · g / (|g| + ε), i.e. lr against the sign of its gradient.
  std::vector<double> expected(4);
  for (size_t j = 0; j < 4; ++j) expected[j] = p0[j] - lr * g[0][j] / (std::abs(g[0][j]) + eps);
  p.set_grad(Tensor::from_vector(g[0], {2, 2}));
  adam.step();
  CHECK(adam.step_count() == 1);
  for (size_t j = 0; j < 4; ++j) CHECK(p.to_double_vector()[j] == doctest::Approx(expected[j]).epsilon(1e-13));

  // Step 2: m = 0.09 g1 + 0.1 g2, v = 0.000999 g1² + 0.001 g2², c1 = 0.19, c2 = 0.001999.
  std::vector<double> m2(4), v2(4);
  for (size_t j = 0; j < 4; ++j) {
    m2[j] = 0.09 * g[0][j] + 0.1 * g[1][j];
    v2[j] = 0.000999 * g[0][j] * g[0][j] + 0.001 * g[1][j] * g[1][j];
    expected[j] -= lr * (m2[j] / 0.19) / (std::sqrt(v2[j] / 0.001999) + eps);
  }
  p.set_grad(Tensor::from_vector(g[1], {2, 2}));
  adam.step();
  for (size_t j = 0; j < 4; ++j) CHECK(p.to_double_vector()[j] == doctest::Approx(expected[j]).epsilon(1e-12));

  // Step 3: c1 = 1 - 0.729 = 0.271, c2 = 1 - 0.997002999 = 0.002997001.
  for (size_t j = 0; j < 4; ++j) {
    const double m3 = 0.9 * m2[j] + 0.1 * g[2][j];
    const double v3 = 0.999 * v2[j] + 0.001 * g[2][j] * g[2][j];
    expected[j] -= lr * (m3 / 0.271) / (std::sqrt(v3 / 0.002997001) + eps);
  }
  p.set_grad(Tensor::from_vector(g[2], {2, 2}));
  adam.step();
  for (size_t j = 0; j < 4; ++j) CHECK(p.to_double_vector()[j] == doctest::Approx(expected[j]).epsilon(1e-12));
  // Element 3 had a zero gradient at step 2 and still moved (momentum): not a no-op.
  CHECK(expected[3] != doctest::Approx(p0[3] - lr));
}

TEST_CASE("optim: Adam agrees with an independent implementation, f32 and f64, skipped grads") {
  for (DType dt : {DType::F64, DType::F32}) {
    INFO(dtype_name(dt));
    Generator gen(42);
    std::vector<Tensor> params = {Tensor::randn({3, 4}, gen, dt), Tensor::randn({5}, gen, dt),
                                  Tensor::randn({2, 1, 3, 3}, gen, dt)};
    std::vector<Tensor*> ptrs;
    std::vector<std::vector<double>> ref_params;
    for (auto& p : params) {
      p.set_requires_grad();
      ptrs.push_back(&p);
      ref_params.push_back(p.to_double_vector());
    }
    const double lr = 3e-3;
    Adam adam(ptrs, AdamOptions{lr});
    ReferenceAdam ref(lr, params.size());
    for (int s = 1; s <= 12; ++s) {
      adam.zero_grad();
      for (size_t i = 0; i < params.size(); ++i) {
        if (i == 1 && s % 3 == 0) continue;  // no gradient: Adam must skip it, moments frozen
        if (i == 2 && s < 4) continue;       // starts late: its own bias correction starts at 1
        Tensor g = grad_for(params[i], i, s);
        params[i].set_grad(g);
        ref.step(i, ref_params[i], g.to_double_vector());
      }
      adam.step();
    }
    const double tol = dt == DType::F64 ? 1e-12 : 2e-6;
    for (size_t i = 0; i < params.size(); ++i) {
      auto got = params[i].to_double_vector();
      for (size_t j = 0; j < got.size(); ++j) CHECK(std::abs(got[j] - ref_params[i][j]) <= tol);
    }
  }
}

TEST_CASE("optim: exported state resumes bit-identically, through a safetensors file") {
  const std::string dir = testing::scratch_dir("optim_resume");
  auto make = [](uint64_t seed) {
    Generator gen(seed);
    std::vector<Tensor> ps = {Tensor::randn({4, 3}, gen, DType::F32), Tensor::randn({6}, gen, DType::F32)};
    for (auto& p : ps) p.set_requires_grad();
    return ps;
  };
  auto run = [](std::vector<Tensor>& ps, Adam& adam, int from, int to) {
    for (int s = from; s < to; ++s) {
      adam.zero_grad();
      for (size_t i = 0; i < ps.size(); ++i)
        if (!(i == 1 && s == 2)) ps[i].set_grad(grad_for(ps[i], i, s));
      if (s == 5) adam.set_lr(adam.lr() / 2);
      adam.step();
    }
  };
  // Straight through: 9 steps.
  std::vector<Tensor> a = make(7);
  Adam adam_a({{"enc.weight", &a[0]}, {"enc.bias", &a[1]}}, AdamOptions{1e-2});
  run(a, adam_a, 0, 9);

  // 4 steps, checkpoint (parameters + optimiser state), fresh objects, 5 more steps.
  std::vector<Tensor> b = make(7);
  Adam adam_b({{"enc.weight", &b[0]}, {"enc.bias", &b[1]}}, AdamOptions{1e-2});
  run(b, adam_b, 0, 4);
  std::map<std::string, Tensor> ckpt = adam_b.state_dict();
  CHECK(ckpt.count("optim.m.enc.weight") == 1);
  CHECK(ckpt.at("optim.step").dtype() == DType::I64);
  CHECK(ckpt.at("optim.t.enc.bias").item() == 3);  // skipped at step 2
  ckpt["enc.weight"] = b[0];
  ckpt["enc.bias"] = b[1];
  save_safetensors(dir + "/ckpt.safetensors", ckpt);

  const SafetensorsFile f = load_safetensors(dir + "/ckpt.safetensors");
  std::vector<Tensor> c = make(99);
  std::memcpy(c[0].raw_data(), f.tensors.at("enc.weight").raw_data(), c[0].nbytes());
  std::memcpy(c[1].raw_data(), f.tensors.at("enc.bias").raw_data(), c[1].nbytes());
  Adam adam_c({{"enc.weight", &c[0]}, {"enc.bias", &c[1]}}, AdamOptions{1e-2});
  adam_c.load_state_dict(f.tensors);  // model entries in the map are ignored
  CHECK(adam_c.step_count() == 4);
  run(c, adam_c, 4, 9);
  CHECK(adam_c.step_count() == adam_a.step_count());
  for (size_t i = 0; i < a.size(); ++i) CHECK(bytes_of(c[i]) == bytes_of(a[i]));
  for (const auto& [k, t] : adam_a.state_dict()) CHECK(bytes_of(adam_c.state_dict().at(k)) == bytes_of(t));

  // A state that does not fit is refused and leaves the optimiser as it was.
  auto bad = adam_a.state_dict();
  bad["optim.m.enc.bias"] = Tensor::zeros({7});
  CHECK_THROWS_WITH_AS(adam_c.load_state_dict(bad),
                       "Adam: state 'optim.m.enc.bias' is [7], its parameter is [6]", Error);
  bad = adam_a.state_dict();
  bad["optim.m.dec.weight"] = Tensor::zeros({7});
  CHECK_THROWS_WITH_AS(adam_c.load_state_dict(bad),
                       "Adam: unknown optimiser state 'optim.m.dec.weight' (2 parameters)", Error);
  bad = adam_a.state_dict();
  bad.erase("optim.v.enc.weight");
  CHECK_THROWS_AS(adam_c.load_state_dict(bad), Error);
  bad.erase("optim.step");
  CHECK_THROWS_WITH_AS(adam_c.load_state_dict(bad), "Adam: the state has no 'optim.step'", Error);
  CHECK(adam_c.step_count() == 9);

  // Keys by index when no names are given; an empty state resets.
  Adam by_index({&c[0], &c[1]});
  by_index.zero_grad();
  c[0].set_grad(grad_for(c[0], 0, 0));
  by_index.step();
  auto st = by_index.state_dict();
  CHECK(st.count("optim.m.0") == 1);
  CHECK(st.count("optim.m.1") == 0);  // never updated: no state, as in PyTorch
  by_index.load_state_dict({{"optim.step", Tensor::zeros({}, DType::I64)}});
  CHECK(by_index.state_dict().size() == 1);
}

TEST_CASE("optim: arguments are checked") {
  Tensor p = Tensor::zeros({3});
  CHECK_THROWS_WITH_AS(Adam({&p, &p}), "Adam: parameter '1' is listed twice", Error);
  CHECK_THROWS_WITH_AS(Adam({&p}, AdamOptions{-1.0}), "Adam: invalid learning rate -1.000000", Error);
  CHECK_THROWS_AS(Adam({&p}, AdamOptions{1e-3, 1.0}), Error);
  Tensor h = Tensor::zeros({3}, DType::F16);
  CHECK_THROWS_AS(Adam({&h}), Error);
  Adam adam({&p});
  CHECK_THROWS_AS(adam.set_lr(std::nan("")), Error);
  adam.set_lr(5e-5);
  CHECK(adam.lr() == 5e-5);
  p.set_grad(Tensor::zeros({4}));
  CHECK_THROWS_WITH_AS(adam.step(), "Adam: parameter '0' is [3] f32 cpu but its gradient is [4] f32 cpu", Error);
  adam.zero_grad();
  CHECK_FALSE(p.grad().defined());

  Tensor m = Tensor::zeros({3}, DType::F64), v = Tensor::zeros({3}), g = Tensor::zeros({3});
  CHECK_THROWS_WITH_AS(backend(Device::CPU).adam_step(p, g, m, v, AdamParams{}),
                       "adam_step: m is [3] f64, param is [3] f32", Error);
}

TEST_CASE("optim: Adam on the GPU follows the CPU" * doctest::test_suite("gpu")) {
  for (DType dt : {DType::F32, DType::F64}) {
    Generator gen(3);
    Tensor cpu = Tensor::randn({257, 3}, gen, dt);
    Tensor gpu = cpu.to(Device::CUDA);
    cpu.set_requires_grad();
    gpu.set_requires_grad();
    Adam a({&cpu}, AdamOptions{1e-2}), b({&gpu}, AdamOptions{1e-2});
    for (int s = 0; s < 6; ++s) {
      Tensor g = grad_for(cpu, 0, s);
      cpu.set_grad(g);
      gpu.set_grad(g.to(Device::CUDA));
      a.step();
      b.step();
    }
    auto x = cpu.to_double_vector(), y = gpu.to_double_vector();
    const double tol = dt == DType::F64 ? 1e-12 : 1e-5;
    for (size_t i = 0; i < x.size(); ++i) CHECK(std::abs(x[i] - y[i]) <= tol);
    CHECK(bytes_of(b.state_dict().at("optim.t.0")) == bytes_of(a.state_dict().at("optim.t.0")));
  }
}
