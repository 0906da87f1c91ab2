// The CUDA backend against the CPU backend: every Backend method runs on the same random
// data on both devices, GPU outputs start as NaN (so an element a kernel forgets to write
// fails), and each comparison prints its relative error (max |gpu - cpu| / max |cpu|).
// Tolerances: 1e-5 for f32, 1e-10 for f64. Every GPU test skips without a device; the first
// test checks the kernels' host/device helpers against the CPU formulas on any machine.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/ops.h"
#include "cuda/host_device.h"
#include "tests/test_util.h"
#ifdef PCONV_HAS_CUDA
#include "cuda/allocator.h"
#endif

using namespace pconv;

namespace {

constexpr DType kFloatTypes[] = {DType::F32, DType::F64};
double tolerance(DType dt) { return dt == DType::F32 ? 1e-5 : 1e-10; }

// One tensor on each device; p[false] is the CPU one, p[true] the GPU one.
struct Pair {
  Tensor cpu, gpu;
  Tensor& operator[](bool on_gpu) { return on_gpu ? gpu : cpu; }
};

// The same backend call on both devices: f(backend, on_gpu).
template <typename F>
void on_both(F&& f) {
  f(backend(Device::CPU), false);
  f(backend(Device::CUDA), true);
}

Pair mirror(const Tensor& cpu) { return Pair{cpu, cpu.detach().to(Device::CUDA)}; }

Pair random_pair(const Shape& s, DType dt, uint64_t seed, double low = -1, double high = 1) {
  Generator g(seed);
  return mirror(Tensor::rand(s, g, dt, Device::CPU, low, high));
}

// Outputs start as NaN on both devices.
Pair poisoned_pair(const Shape& s, DType dt) {
  Pair p{Tensor::empty(s, dt, Device::CPU), Tensor::empty(s, dt, Device::CUDA)};
  backend(Device::CPU).fill(p.cpu, std::numeric_limits<double>::quiet_NaN());
  backend(Device::CUDA).fill(p.gpu, std::numeric_limits<double>::quiet_NaN());
  return p;
}

Pair from_values(const std::vector<double>& v, const Shape& s, DType dt) {
  return mirror(Tensor::from_vector(v, s).to(dt));
}

// max |gpu - cpu| / max |cpu|; infinite when the GPU has a NaN or inf the CPU has not.
double relative_error(const Tensor& gpu, const Tensor& cpu) {
  const auto g = gpu.to_double_vector(), c = cpu.to_double_vector();
  if (g.size() != c.size()) return std::numeric_limits<double>::infinity();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isfinite(c[i]) != std::isfinite(g[i])) return std::numeric_limits<double>::infinity();
    if (!std::isfinite(c[i])) continue;
    diff = std::max(diff, std::abs(g[i] - c[i]));
    scale = std::max(scale, std::abs(c[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

void expect_close(const std::string& what, Pair& p, double tol) {
  REQUIRE(p.gpu.shape() == p.cpu.shape());
  const double e = relative_error(p.gpu, p.cpu);
  MESSAGE(what << ": relative error " << e);
  CHECK_MESSAGE(e <= tol, what << ": GPU differs from CPU by " << e << " (tolerance " << tol << ")");
}

std::string name(const char* what, DType dt) { return std::string(what) + " " + dtype_name(dt); }

// A 0/1 mask N×1×H×W: random holes plus a square hole big enough that some windows see
// nothing (count = 0).
Pair hole_mask(int64_t n, int64_t h, int64_t w, DType dt, uint32_t seed) {
  std::mt19937 rng(seed);
  std::bernoulli_distribution known(0.7);
  std::vector<double> v(size_t(n * h * w));
  for (int64_t b = 0; b < n; ++b)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        const bool square = y >= h / 4 && y < h / 4 + h / 2 && x >= w / 4 && x < w / 4 + w / 2;
        v[size_t((b * h + y) * w + x)] = square ? 0.0 : (known(rng) ? 1.0 : 0.0);
      }
  return from_values(v, {n, 1, h, w}, dt);
}

}  // namespace

TEST_CASE("gpu helpers: the kernels' host/device formulas match the CPU backend") {
  // Runs everywhere: cuda/host_device.h compiled for the host must agree with the CPU's.
  for (uint64_t i = 0; i < 4096; ++i) {
    const uint64_t x = i * 0x9e3779b97f4a7c15ull + (i << 7);
    REQUIRE(hd::splitmix64(x) == splitmix64(x));
    REQUIRE(hd::hashed_uniform(i, x) == hashed_uniform(i, x));
  }
  Tensor u = Tensor::empty({257}, DType::F64), nrm = Tensor::empty({257}, DType::F64);
  backend(Device::CPU).fill_uniform(u, -2, 3, 11, 5);
  backend(Device::CPU).fill_normal(nrm, 0.5, 2, 11, 5);
  for (int64_t i = 0; i < 257; ++i) {
    CHECK(hd::uniform_value(-2, 3, 11, 5 + uint64_t(i)) ==
          doctest::Approx(u.data<double>()[i]).epsilon(1e-15));
    CHECK(hd::normal_value(0.5, 2, 11, 5, uint64_t(i)) ==
          doctest::Approx(nrm.data<double>()[i]).epsilon(1e-13));
  }
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t b = uint16_t(h);
    const float f16 = f16_to_f32(b), bf = bf16_to_f32(b);
    REQUIRE(hd::float_bits(hd::f16_to_f32(b)) == hd::float_bits(f16));
    REQUIRE(hd::float_bits(hd::bf16_to_f32(b)) == hd::float_bits(bf));
  }
  std::mt19937 rng(3);
  for (int i = 0; i < 200000; ++i) {
    const float f = hd::bits_float(uint32_t(rng()));
    REQUIRE(hd::f32_to_f16(f) == f32_to_f16(f));
    REQUIRE(hd::f32_to_bf16(f) == f32_to_bf16(f));
  }
}

TEST_CASE("gpu: memory round-trips and the caching allocator reuses blocks" * doctest::test_suite("gpu")) {
  std::vector<double> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = double(i) * 0.5 - 7;
  Tensor g = Tensor::from_vector(v, {10, 100}, Device::CUDA);
  CHECK(g.device() == Device::CUDA);
  CHECK(g.to_double_vector() == v);
#ifdef PCONV_HAS_CUDA
  { Tensor warm = Tensor::empty({123, 456}, DType::F32, Device::CUDA); }
  const CudaMemoryStats before = cuda_memory_stats();
  for (int i = 0; i < 10; ++i) {
    Tensor t = Tensor::empty({123, 456}, DType::F32, Device::CUDA);
    CHECK(cuda_memory_stats().in_use >= size_t(123 * 456 * 4));
  }
  const CudaMemoryStats after = cuda_memory_stats();
  CHECK(after.device_allocs == before.device_allocs);
  CHECK(after.cache_hits >= before.cache_hits + 10);
  CHECK(after.peak_in_use >= size_t(123 * 456 * 4));
  MESSAGE("allocator: " << after.device_allocs << " cudaMalloc calls, " << after.cache_hits
                        << " cache hits, peak " << after.peak_in_use / 1024 << " KiB");
  CHECK_THROWS_WITH_AS(Tensor::empty({int64_t(1) << 50}, DType::F32, Device::CUDA),
                       doctest::Contains("cuda: out of memory allocating"), Error);
#endif
}

TEST_CASE("gpu: copy converts between every pair of dtypes exactly as the CPU does" * doctest::test_suite("gpu")) {
  const DType all[] = {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I64};
  Generator gen(5);
  Tensor base = Tensor::rand({3, 41}, gen, DType::F64, Device::CPU, -300, 300);
  for (DType from : all)
    for (DType to : all) {
      Pair src = mirror(base.to(from));
      Pair dst = poisoned_pair({3, 41}, to);
      on_both([&](Backend& be, bool g) { be.copy(src[g], dst[g]); });
      CHECK_MESSAGE(dst.gpu.to_double_vector() == dst.cpu.to_double_vector(),
                    "copy " << dtype_name(from) << " -> " << dtype_name(to));
    }
}

TEST_CASE("gpu: fill, fill_uniform and fill_normal give the CPU's values" * doctest::test_suite("gpu")) {
  for (DType dt : {DType::F32, DType::F64, DType::BF16}) {
    Pair t = poisoned_pair({1000, 3}, dt);
    on_both([&](Backend& be, bool g) { be.fill(t[g], 0.3); });
    expect_close(name("fill", dt), t, 0);
    on_both([&](Backend& be, bool g) { be.fill_uniform(t[g], -1.5, 2.5, 42, 1001); });
    expect_close(name("fill_uniform", dt), t, dt == DType::F64 ? 1e-15 : 0);
    on_both([&](Backend& be, bool g) { be.fill_normal(t[g], 0.5, 2.0, 42, 77); });
    // Box-Muller's log and cos are the device's and libm's: equal to about 1 ulp.
    expect_close(name("fill_normal", dt), t, dt == DType::F64 ? 1e-14 : 1e-6);
  }
}

TEST_CASE("gpu: unary ops" * doctest::test_suite("gpu")) {
  const UnaryOp ops[] = {UnaryOp::Neg,       UnaryOp::Abs,        UnaryOp::Sign,
                         UnaryOp::Exp,       UnaryOp::Log,        UnaryOp::Sqrt,
                         UnaryOp::Square,    UnaryOp::Relu,       UnaryOp::LeakyRelu,
                         UnaryOp::Step,      UnaryOp::AddScalar,  UnaryOp::MulScalar,
                         UnaryOp::RSubScalar, UnaryOp::Clamp01};
  for (DType dt : kFloatTypes)
    for (UnaryOp op : ops) {
      const bool positive = op == UnaryOp::Log || op == UnaryOp::Sqrt;
      Pair x = random_pair({4, 3, 17, 5}, dt, 10 + int(op), positive ? 0.05 : -2, 2);
      Pair y = poisoned_pair(x.cpu.shape(), dt);
      on_both([&](Backend& be, bool g) { be.unary(op, x[g], y[g], 0.3); });
      expect_close(name(("unary " + std::to_string(int(op))).c_str(), dt), y, tolerance(dt));
    }
}

TEST_CASE("gpu: binary ops with broadcasting" * doctest::test_suite("gpu")) {
  const std::vector<std::array<Shape, 3>> cases = {
      {Shape{2, 3, 4, 5}, Shape{2, 3, 4, 5}, Shape{2, 3, 4, 5}},
      {Shape{2, 3, 4, 5}, Shape{1, 3, 1, 1}, Shape{2, 3, 4, 5}},
      {Shape{1, 3, 1, 5}, Shape{2, 1, 4, 1}, Shape{2, 3, 4, 5}},
      {Shape{1, 1, 1, 1}, Shape{2, 3, 4, 5}, Shape{2, 3, 4, 5}},
      {Shape{6, 1}, Shape{1, 7}, Shape{6, 7}},
  };
  const BinaryOp ops[] = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div};
  for (DType dt : kFloatTypes)
    for (const auto& c : cases)
      for (BinaryOp op : ops) {
        Pair a = random_pair(c[0], dt, 20 + int(op), -2, 2);
        Pair b = random_pair(c[1], dt, 30 + int(op), 0.5, 2);  // away from 0 for Div
        Pair y = poisoned_pair(c[2], dt);
        on_both([&](Backend& be, bool g) { be.binary(op, a[g], b[g], y[g]); });
        expect_close(name(("binary " + std::to_string(int(op)) + " " + shape_str(c[0]) + " " +
                           shape_str(c[1])).c_str(), dt),
                     y, tolerance(dt));
      }
}

TEST_CASE("gpu: pointwise_grad" * doctest::test_suite("gpu")) {
  for (DType dt : kFloatTypes)
    for (PointwiseGrad op : {PointwiseGrad::Relu, PointwiseGrad::LeakyRelu, PointwiseGrad::Abs}) {
      Pair x = random_pair({3, 4, 9, 7}, dt, 40 + int(op));
      Pair gy = random_pair({3, 4, 9, 7}, dt, 50 + int(op));
      Pair gx = poisoned_pair({3, 4, 9, 7}, dt);
      on_both([&](Backend& be, bool g) { be.pointwise_grad(op, x[g], gy[g], gx[g], 0.2); });
      expect_close(name(("pointwise_grad " + std::to_string(int(op))).c_str(), dt), gx,
                   tolerance(dt));
    }
}

TEST_CASE("gpu: sum_to over every pattern of reduced dims" * doctest::test_suite("gpu")) {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{3, 4, 5, 6}, {1, 4, 1, 1}},   {{3, 4, 5, 6}, {3, 1, 5, 1}},
      {{3, 4, 5, 6}, {1, 1, 1, 1}},   {{3, 4, 5, 6}, {3, 4, 1, 1}},
      {{3, 4, 5, 6}, {1, 4, 5, 6}},   {{3, 4, 5, 6}, {3, 4, 5, 6}},
      {{2, 3, 64, 64}, {1, 3, 1, 1}},  // block sums split into chunks
      {{1, 1, 300, 300}, {1, 1, 1, 1}},
      {{64, 1, 16, 16}, {1, 1, 16, 16}},  // one thread per output
      {{2, 8, 64, 64}, {1, 8, 64, 64}},
  };
  for (DType dt : kFloatTypes)
    for (const auto& [xs, ys] : cases) {
      Pair x = random_pair(xs, dt, 60, 0, 1);  // positive: no cancellation in the reference
      Pair y = poisoned_pair(ys, dt);
      on_both([&](Backend& be, bool g) { be.sum_to(x[g], y[g]); });
      expect_close(name(("sum_to " + shape_str(xs) + " -> " + shape_str(ys)).c_str(), dt), y,
                   tolerance(dt));
    }
}

TEST_CASE("gpu: gemm with transposes, batch broadcast and beta" * doctest::test_suite("gpu")) {
  struct Case {
    int64_t batch_a, batch_b, m, k, n;
  };
  for (DType dt : kFloatTypes)
    for (Case c : {Case{3, 3, 5, 7, 4}, Case{1, 3, 5, 7, 4}, Case{3, 1, 6, 2, 9}, Case{1, 1, 64, 100, 50}})
      for (int flags = 0; flags < 4; ++flags)
        for (double beta : {0.0, 0.5}) {
          const bool ta = flags & 1, tb = flags & 2;
          const int64_t batch = std::max(c.batch_a, c.batch_b);
          Pair a = random_pair(ta ? Shape{c.batch_a, c.k, c.m} : Shape{c.batch_a, c.m, c.k}, dt, 70);
          Pair b = random_pair(tb ? Shape{c.batch_b, c.n, c.k} : Shape{c.batch_b, c.k, c.n}, dt, 71);
          Pair out = beta == 0 ? poisoned_pair({batch, c.m, c.n}, dt)
                               : random_pair({batch, c.m, c.n}, dt, 72);
          on_both([&](Backend& be, bool g) { be.gemm(a[g], ta, b[g], tb, out[g], 1.5, beta); });
          expect_close(name(("gemm " + shape_str(a.cpu.shape()) + (ta ? "T" : "") + " x " +
                             shape_str(b.cpu.shape()) + (tb ? "T" : "") + " beta " +
                             std::to_string(beta)).c_str(), dt),
                       out, tolerance(dt));
        }
}

TEST_CASE("gpu: conv2d forward, backward data and backward weight" * doctest::test_suite("gpu")) {
  struct Case {
    int64_t n, c, h, w, k, kernel, stride, pad;
  };
  const Case cases[] = {{2, 3, 9, 8, 4, 3, 1, 1},  {2, 5, 16, 16, 6, 7, 2, 3},
                        {1, 4, 7, 7, 2, 1, 1, 0},  {2, 3, 10, 10, 4, 4, 2, 1},
                        {1, 2, 5, 6, 3, 3, 1, 0},  {3, 16, 12, 12, 8, 5, 2, 2}};
  for (DType dt : kFloatTypes)
    for (const Case& c : cases) {
      const Conv2dParams p{c.stride, c.pad};
      const int64_t ho = (c.h + 2 * c.pad - c.kernel) / c.stride + 1;
      const int64_t wo = (c.w + 2 * c.pad - c.kernel) / c.stride + 1;
      const Shape xs{c.n, c.c, c.h, c.w}, ws{c.k, c.c, c.kernel, c.kernel}, ys{c.n, c.k, ho, wo};
      const std::string tag = shape_str(xs) + " * " + shape_str(ws) + " s" +
                              std::to_string(c.stride) + " p" + std::to_string(c.pad);
      Pair x = random_pair(xs, dt, 80), w = random_pair(ws, dt, 81), gy = random_pair(ys, dt, 82);
      Pair y = poisoned_pair(ys, dt), gx = poisoned_pair(xs, dt), gw = poisoned_pair(ws, dt);
      on_both([&](Backend& be, bool g) {
        be.conv2d_forward(x[g], w[g], y[g], p);
        be.conv2d_backward_data(gy[g], w[g], gx[g], p);
        be.conv2d_backward_weight(gy[g], x[g], gw[g], p);
      });
      expect_close(name(("conv2d_forward " + tag).c_str(), dt), y, tolerance(dt));
      expect_close(name(("conv2d_backward_data " + tag).c_str(), dt), gx, tolerance(dt));
      expect_close(name(("conv2d_backward_weight " + tag).c_str(), dt), gw, tolerance(dt));
    }
}

TEST_CASE("gpu: partial convolution pieces with two mask groups" * doctest::test_suite("gpu")) {
  for (DType dt : kFloatTypes) {
    const int64_t n = 2, h = 12, w = 10;
    Pair m1 = hole_mask(n, h, w, dt, 1), m2 = hole_mask(n, h, w, dt, 2);
    const Mask cpu_mask{{2, m1.cpu}, {3, m2.cpu}}, gpu_mask{{2, m1.gpu}, {3, m2.gpu}};
    auto mask = [&](bool g) -> const Mask& { return g ? gpu_mask : cpu_mask; };
    Pair x = random_pair({n, 5, h, w}, dt, 90), y = poisoned_pair({n, 5, h, w}, dt);
    on_both([&](Backend& be, bool g) { be.mask_apply(x[g], mask(g), y[g]); });
    expect_close(name("mask_apply", dt), y, tolerance(dt));

    for (const auto& kernel_stride_pad : {std::array<int64_t, 3>{3, 1, 1}, {7, 2, 3}, {4, 2, 1}}) {
      const int64_t kernel = kernel_stride_pad[0], stride = kernel_stride_pad[1], pad = kernel_stride_pad[2];
      const Conv2dParams p{stride, pad};
      const int64_t ho = (h + 2 * pad - kernel) / stride + 1, wo = (w + 2 * pad - kernel) / stride + 1;
      const std::string tag = " k" + std::to_string(kernel) + " s" + std::to_string(stride);
      Pair count = poisoned_pair({n, 1, ho, wo}, dt);
      on_both([&](Backend& be, bool g) { be.pconv_count(mask(g), kernel, kernel, p, count[g]); });
      expect_close(name(("pconv_count" + tag).c_str(), dt), count, 0);

      const double window = 5.0 * double(kernel * kernel);
      Pair bias = random_pair({4}, dt, 91);
      for (bool with_bias : {true, false}) {
        Pair out = random_pair({n, 4, ho, wo}, dt, 92), new_mask = poisoned_pair({n, 1, ho, wo}, dt);
        Tensor none;
        on_both([&](Backend& be, bool g) {
          be.pconv_epilogue(out[g], count[g], with_bias ? bias[g] : none, window, new_mask[g]);
        });
        expect_close(name(("pconv_epilogue" + tag + (with_bias ? " bias" : "")).c_str(), dt), out,
                     tolerance(dt));
        expect_close(name(("pconv_epilogue new mask" + tag).c_str(), dt), new_mask, 0);
      }
      Pair gy = random_pair({n, 4, ho, wo}, dt, 93), gs = poisoned_pair({n, 4, ho, wo}, dt);
      on_both([&](Backend& be, bool g) { be.pconv_grad_scale(gy[g], count[g], window, gs[g]); });
      expect_close(name(("pconv_grad_scale" + tag).c_str(), dt), gs, tolerance(dt));
    }
  }
}

TEST_CASE("gpu: batch norm statistics, apply and backward in both modes" * doctest::test_suite("gpu")) {
  for (DType dt : kFloatTypes)
    for (const Shape& xs : {Shape{4, 3, 5, 6}, Shape{8, 16, 32, 32}, Shape{5, 7}}) {
      const int64_t c = xs[1];
      const std::string tag = shape_str(xs);
      Pair x = random_pair(xs, dt, 100, 1, 4);  // mean far from 0 checks the variance pass
      Pair mean = poisoned_pair({c}, dt), var = poisoned_pair({c}, dt);
      on_both([&](Backend& be, bool g) { be.batch_norm_stats(x[g], mean[g], var[g]); });
      expect_close(name(("batch_norm_stats mean " + tag).c_str(), dt), mean, tolerance(dt));
      expect_close(name(("batch_norm_stats var " + tag).c_str(), dt), var, tolerance(dt));

      // The rest uses the CPU's statistics on both devices, to test each kernel alone.
      Pair stat_mean = mirror(mean.cpu), stat_var = mirror(var.cpu);
      Pair gamma = random_pair({c}, dt, 101, 0.5, 2), beta = random_pair({c}, dt, 102);
      Pair y = poisoned_pair(xs, dt);
      on_both([&](Backend& be, bool g) {
        be.batch_norm_apply(x[g], stat_mean[g], stat_var[g], gamma[g], beta[g], 1e-5, y[g]);
      });
      expect_close(name(("batch_norm_apply " + tag).c_str(), dt), y, tolerance(dt));

      Pair gy = random_pair(xs, dt, 103);
      for (bool batch_stats : {true, false}) {
        Pair gx = poisoned_pair(xs, dt), gg = poisoned_pair({c}, dt), gb = poisoned_pair({c}, dt);
        on_both([&](Backend& be, bool g) {
          be.batch_norm_backward(gy[g], x[g], stat_mean[g], stat_var[g], gamma[g], 1e-5,
                                 batch_stats, gx[g], gg[g], gb[g]);
        });
        const std::string mode = batch_stats ? " batch stats" : " fixed stats";
        expect_close(name(("batch_norm_backward gx " + tag + mode).c_str(), dt), gx, tolerance(dt));
        expect_close(name(("batch_norm_backward ggamma " + tag + mode).c_str(), dt), gg,
                     tolerance(dt));
        expect_close(name(("batch_norm_backward gbeta " + tag + mode).c_str(), dt), gb,
                     tolerance(dt));
      }
    }
}

TEST_CASE("gpu: nearest upsampling, max pooling and their backward" * doctest::test_suite("gpu")) {
  for (DType dt : kFloatTypes) {
    Pair x = random_pair({2, 3, 4, 5}, dt, 110), up = poisoned_pair({2, 3, 8, 10}, dt);
    on_both([&](Backend& be, bool g) { be.upsample_nearest2x(x[g], up[g]); });
    expect_close(name("upsample_nearest2x", dt), up, tolerance(dt));
    Pair gup = random_pair({2, 3, 8, 10}, dt, 111), gx = poisoned_pair({2, 3, 4, 5}, dt);
    on_both([&](Backend& be, bool g) { be.upsample_nearest2x_backward(gup[g], gx[g]); });
    expect_close(name("upsample_nearest2x_backward", dt), gx, tolerance(dt));

    for (const Shape& xs : {Shape{2, 3, 6, 8}, Shape{1, 2, 7, 5}}) {
      // Values on a coarse grid so windows hold ties: the first maximum must win.
      std::mt19937 rng(7);
      std::vector<double> v(size_t(shape_numel(xs)));
      for (double& e : v) e = double(int(rng() % 4)) * 0.5;
      Pair px = from_values(v, xs, dt);
      const Shape ys{xs[0], xs[1], xs[2] / 2, xs[3] / 2};
      Pair py = poisoned_pair(ys, dt), pgy = random_pair(ys, dt, 112), pgx = poisoned_pair(xs, dt);
      on_both([&](Backend& be, bool g) {
        be.max_pool2x2(px[g], py[g]);
        be.max_pool2x2_backward(px[g], pgy[g], pgx[g]);
      });
      expect_close(name(("max_pool2x2 " + shape_str(xs)).c_str(), dt), py, 0);
      expect_close(name(("max_pool2x2_backward " + shape_str(xs)).c_str(), dt), pgx, 0);
    }
  }
}

// The GPU has no kernel of its own: Backend's default fills through the host with the CPU's
// kernel, so the values must be the CPU's exactly.
TEST_CASE("gpu: the device's harmonic fill gives the CPU's values bit for bit" * doctest::test_suite("gpu")) {
  for (DType dt : kFloatTypes) {
    // Odd sizes (uneven pyramids), three images: random holes with a square hole; no hole at all;
    // no known pixel (the plane becomes 0). In place and into another tensor.
    const int64_t h = 19, w = 24;
    const Tensor m0 = hole_mask(1, h, w, DType::F64, 131).cpu;
    std::vector<double> mv(m0.data<double>(), m0.data<double>() + h * w);
    mv.insert(mv.end(), size_t(h * w), 1.0);
    mv.insert(mv.end(), size_t(h * w), 0.0);
    Pair x = random_pair({3, 3, h, w}, dt, 130), m = from_values(mv, {3, 1, h, w}, dt);
    Pair y = poisoned_pair({3, 3, h, w}, dt);
    on_both([&](Backend& be, bool g) { be.harmonic_fill(x[g], m[g], y[g], HarmonicFillParams{}); });
    expect_close(name("harmonic_fill", dt), y, 0);
    on_both([&](Backend& be, bool g) { be.harmonic_fill(x[g], m[g], x[g], HarmonicFillParams{}); });
    expect_close(name("harmonic_fill in place", dt), x, 0);
    // A sweep cap that stops planes before they converge, and a photo-sized plane with large
    // holes (many sweeps at each of ten levels).
    Pair a = random_pair({1, 3, 300, 517}, dt, 132), ma = hole_mask(1, 300, 517, dt, 133);
    Pair b = poisoned_pair({1, 3, 300, 517}, dt);
    HarmonicFillParams capped;
    capped.max_sweeps = 5;
    on_both([&](Backend& be, bool g) { be.harmonic_fill(a[g], ma[g], b[g], capped); });
    expect_close(name("harmonic_fill 5 sweeps", dt), b, 0);
    on_both([&](Backend& be, bool g) { be.harmonic_fill(a[g], ma[g], b[g], HarmonicFillParams{}); });
    expect_close(name("harmonic_fill 300x517", dt), b, 0);
  }
}

TEST_CASE("gpu: copy_into_slice and copy_from_slice along each dim" * doctest::test_suite("gpu")) {
  for (DType dt : kFloatTypes)
    for (int64_t dim = 0; dim < 4; ++dim) {
      Shape big{2, 7, 4, 5}, small = big;
      small[size_t(dim)] = 2;
      const int64_t start = big[size_t(dim)] - 2;
      Pair x = random_pair(small, dt, 120), y = random_pair(big, dt, 121);
      on_both([&](Backend& be, bool g) { be.copy_into_slice(x[g], y[g], dim, start); });
      expect_close(name(("copy_into_slice dim " + std::to_string(dim)).c_str(), dt), y, 0);
      Pair back = poisoned_pair(small, dt);
      on_both([&](Backend& be, bool g) { be.copy_from_slice(y[g], dim, start, back[g]); });
      expect_close(name(("copy_from_slice dim " + std::to_string(dim)).c_str(), dt), back, 0);
    }
}

TEST_CASE("gpu: adam_step" * doctest::test_suite("gpu")) {
  for (DType dt : kFloatTypes) {
    Pair p = random_pair({7, 33}, dt, 130), grad = random_pair({7, 33}, dt, 131);
    Pair m = random_pair({7, 33}, dt, 132, -0.1, 0.1), v = random_pair({7, 33}, dt, 133, 0, 0.01);
    AdamParams ap;
    ap.lr = 2e-3;
    ap.step = 3;
    on_both([&](Backend& be, bool g) { be.adam_step(p[g], grad[g], m[g], v[g], ap); });
    expect_close(name("adam_step param", dt), p, tolerance(dt));
    expect_close(name("adam_step m", dt), m, tolerance(dt));
    expect_close(name("adam_step v", dt), v, tolerance(dt));
  }
}

TEST_CASE("gpu: adam_step_all updates several tensors in one launch as the CPU does one by one" * doctest::test_suite("gpu")) {
  for (DType dt : kFloatTypes) {
    // Sizes around the kernel's 1024-element chunks, a scalar, and each tensor its own step.
    const std::vector<Shape> shapes = {{5, 1000}, {1}, {1024}, {3, 7, 9}};
    std::vector<Pair> p, g, m, v;
    for (size_t i = 0; i < shapes.size(); ++i) {
      const uint64_t seed = 150 + 4 * i;
      p.push_back(random_pair(shapes[i], dt, seed));
      g.push_back(random_pair(shapes[i], dt, seed + 1));
      m.push_back(random_pair(shapes[i], dt, seed + 2, -0.1, 0.1));
      v.push_back(random_pair(shapes[i], dt, seed + 3, 0, 0.01));
    }
    AdamParams ap;
    ap.lr = 2e-3;
    on_both([&](Backend& be, bool gpu) {
      std::vector<AdamSlot> slots;
      for (size_t i = 0; i < shapes.size(); ++i)
        slots.push_back({&p[i][gpu], &g[i][gpu], &m[i][gpu], &v[i][gpu], int64_t(i) + 1});
      be.adam_step_all(slots, ap);
    });
    for (size_t i = 0; i < shapes.size(); ++i) {
      expect_close(name(("adam_step_all param " + std::to_string(i)).c_str(), dt), p[i], tolerance(dt));
      expect_close(name(("adam_step_all m " + std::to_string(i)).c_str(), dt), m[i], tolerance(dt));
      expect_close(name(("adam_step_all v " + std::to_string(i)).c_str(), dt), v[i], tolerance(dt));
    }
  }
}

TEST_CASE("gpu: partial_conv2d + batch_norm + leaky_relu + sum through autograd" * doctest::test_suite("gpu")) {
  for (DType dt : kFloatTypes) {
    Generator gen(140);
    Tensor x = Tensor::rand({2, 3, 10, 12}, gen, dt, Device::CPU, -1, 1);
    Tensor w = Tensor::rand({4, 3, 3, 3}, gen, dt, Device::CPU, -0.5, 0.5);
    Tensor b = Tensor::rand({4}, gen, dt, Device::CPU, -0.5, 0.5);
    Tensor gamma = Tensor::rand({4}, gen, dt, Device::CPU, 0.5, 1.5);
    Tensor beta = Tensor::rand({4}, gen, dt, Device::CPU, -0.5, 0.5);
    Pair m = hole_mask(2, 10, 12, dt, 141);
    struct Result {
      Tensor loss, out, gx, gw, gb, ggamma, gbeta, running_mean;
    };
    auto run = [&](Device dev, const Tensor& mask) {
      auto leaf = [&](const Tensor& t) {
        Tensor l = t.detach().to(dev);
        l.set_requires_grad();
        return l;
      };
      Tensor lx = leaf(x), lw = leaf(w), lb = leaf(b), lg = leaf(gamma), lbe = leaf(beta);
      Tensor rm = Tensor::zeros({4}, dt, dev), rv = Tensor::ones({4}, dt, dev);
      PConvResult pc = partial_conv2d(lx, Mask{{3, mask}}, lw, lb, 2, 1);
      Tensor out = leaky_relu(batch_norm(pc.out, lg, lbe, rm, rv, true, true), 0.2);
      Tensor loss = sum(mul(out, out));
      loss.backward();
      return Result{loss, out, lx.grad(), lw.grad(), lb.grad(), lg.grad(), lbe.grad(), rm};
    };
    Result c = run(Device::CPU, m.cpu), g = run(Device::CUDA, m.gpu);
    const std::pair<const char*, Tensor Result::*> fields[] = {
        {"loss", &Result::loss},       {"output", &Result::out},     {"grad x", &Result::gx},
        {"grad w", &Result::gw},       {"grad bias", &Result::gb},   {"grad gamma", &Result::ggamma},
        {"grad beta", &Result::gbeta}, {"running mean", &Result::running_mean}};
    for (const auto& [label, field] : fields) {
      REQUIRE((g.*field).defined());
      Pair pair{c.*field, g.*field};
      expect_close(name((std::string("autograd ") + label).c_str(), dt), pair,
                   dt == DType::F32 ? 1e-4 : 1e-9);
    }
  }
}
