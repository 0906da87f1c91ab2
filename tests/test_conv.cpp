// conv2d against naive loops (forward and both backwards, f32 and f64) and finite differences.
#include <doctest/doctest.h>

#include <cmath>

#include "core/cpu/cpu_backend.h"
#include "core/ops.h"
#include "tests/gradcheck.h"

using namespace pconv;

namespace {

struct ConvCase {
  int64_t N, C, H, W, K, kh, kw, stride, pad;
  int64_t Ho() const { return (H + 2 * pad - kh) / stride + 1; }
  int64_t Wo() const { return (W + 2 * pad - kw) / stride + 1; }
  std::string name() const {
    return "x [" + std::to_string(N) + "," + std::to_string(C) + "," + std::to_string(H) + "," +
           std::to_string(W) + "] w [" + std::to_string(K) + "," + std::to_string(C) + "," +
           std::to_string(kh) + "," + std::to_string(kw) + "] stride " + std::to_string(stride) +
           " pad " + std::to_string(pad);
  }
};

// The UNet's kinds of layers at toy sizes, odd and even kernels, non-square images and
// kernels, batch 2, a batch of 5 tiny images (the CPU kernel puts several in one GEMM), and
// one case big enough that it splits an image into bands. (The test sets K itself.)
const std::vector<ConvCase> kCases = {
    {1, 3, 17, 19, 4, 7, 7, 2, 3},   // PConv1-like 7×7 s2
    {2, 5, 12, 10, 6, 5, 5, 2, 2},   // 5×5 s2, batch 2
    {2, 4, 9, 11, 3, 3, 3, 1, 1},    // 3×3 s1
    {2, 6, 4, 4, 5, 3, 3, 2, 1},     // down to 2×2 outputs
    {1, 6, 8, 7, 5, 1, 1, 1, 0},     // 1×1 (no im2col)
    {2, 3, 7, 8, 2, 1, 1, 2, 0},     // 1×1 s2: some inputs reach no output
    {1, 3, 8, 8, 4, 2, 2, 2, 0},     // even kernel
    {1, 2, 9, 10, 3, 4, 4, 2, 1},    // even kernel with pad
    {1, 2, 8, 9, 3, 3, 5, 1, 2},     // non-square kernel
    {5, 4, 5, 6, 8, 3, 3, 2, 1},     // several images per block
    {2, 16, 64, 70, 8, 3, 3, 1, 1},  // several row bands per image
    {1, 200, 12, 256, 8, 3, 3, 1, 1},  // deep and wide: 2-row bands, backward-data scatters in 2 phases
};

using Vec = std::vector<double>;

// y[n,k,oh,ow] = Σ_{c,ki,kj} w[k,c,ki,kj] · x[n,c,oh·s−p+ki, ow·s−p+kj] (zero outside).
Vec naive_forward(const ConvCase& t, const Vec& x, const Vec& w) {
  Vec y(size_t(t.N * t.K * t.Ho() * t.Wo()), 0.0);
  for (int64_t n = 0; n < t.N; ++n)
    for (int64_t k = 0; k < t.K; ++k)
      for (int64_t oh = 0; oh < t.Ho(); ++oh)
        for (int64_t ow = 0; ow < t.Wo(); ++ow) {
          double s = 0;
          for (int64_t c = 0; c < t.C; ++c)
            for (int64_t ki = 0; ki < t.kh; ++ki)
              for (int64_t kj = 0; kj < t.kw; ++kj) {
                const int64_t ih = oh * t.stride - t.pad + ki, iw = ow * t.stride - t.pad + kj;
                if (ih < 0 || ih >= t.H || iw < 0 || iw >= t.W) continue;
                s += w[size_t(((k * t.C + c) * t.kh + ki) * t.kw + kj)] *
                     x[size_t(((n * t.C + c) * t.H + ih) * t.W + iw)];
              }
          y[size_t(((n * t.K + k) * t.Ho() + oh) * t.Wo() + ow)] = s;
        }
  return y;
}

// The same loops read backwards: every product's contribution to gx and gw.
void naive_backward(const ConvCase& t, const Vec& x, const Vec& w, const Vec& gy, Vec& gx, Vec& gw) {
  gx.assign(x.size(), 0.0);
  gw.assign(w.size(), 0.0);
  for (int64_t n = 0; n < t.N; ++n)
    for (int64_t k = 0; k < t.K; ++k)
      for (int64_t oh = 0; oh < t.Ho(); ++oh)
        for (int64_t ow = 0; ow < t.Wo(); ++ow) {
          const double g = gy[size_t(((n * t.K + k) * t.Ho() + oh) * t.Wo() + ow)];
          for (int64_t c = 0; c < t.C; ++c)
            for (int64_t ki = 0; ki < t.kh; ++ki)
              for (int64_t kj = 0; kj < t.kw; ++kj) {
                const int64_t ih = oh * t.stride - t.pad + ki, iw = ow * t.stride - t.pad + kj;
                if (ih < 0 || ih >= t.H || iw < 0 || iw >= t.W) continue;
                const size_t xi = size_t(((n * t.C + c) * t.H + ih) * t.W + iw);
                const size_t wi = size_t(((k * t.C + c) * t.kh + ki) * t.kw + kj);
                gx[xi] += g * w[wi];
                gw[wi] += g * x[xi];
              }
        }
}

Tensor as_tensor(const Vec& v, const Shape& s, DType dt) {
  return Tensor::from_vector(v, s).to(dt);
}

// Entries that are not finite (max_rel_diff passes over NaN).
int64_t not_finite(const Tensor& t) {
  int64_t count = 0;
  for (double v : t.to_double_vector()) count += !std::isfinite(v);
  return count;
}

}  // namespace

TEST_CASE("conv2d: forward and both backward kernels match naive loops (f32 and f64)") {
  Backend& cpu = backend(Device::CPU);
  uint64_t seed = 10;
  for (const ConvCase& shape : kCases)
    // 2 filters take the CPU's direct path for few output channels, 8 its im2col + GEMM path.
    for (int64_t filters : {int64_t(2), int64_t(8)}) {
      ConvCase t = shape;
      t.K = filters;
      Generator gen(seed++);
      const Shape xs{t.N, t.C, t.H, t.W}, ws{t.K, t.C, t.kh, t.kw}, ys{t.N, t.K, t.Ho(), t.Wo()};
      const Vec x = Tensor::randn(xs, gen, DType::F64).to_double_vector();
      const Vec w = Tensor::randn(ws, gen, DType::F64).to_double_vector();
      const Vec gy = Tensor::randn(ys, gen, DType::F64).to_double_vector();
      const Vec y_ref = naive_forward(t, x, w);
      Vec gx_ref, gw_ref;
      naive_backward(t, x, w, gy, gx_ref, gw_ref);
      for (DType dt : {DType::F32, DType::F64}) {
        CAPTURE(t.name());
        const std::string dtype = dtype_name(dt);
        CAPTURE(dtype);
        const double tol = dt == DType::F32 ? 2e-5 : 1e-12;
        const Conv2dParams p{t.stride, t.pad};
        Tensor xt = as_tensor(x, xs, dt), wt = as_tensor(w, ws, dt), gyt = as_tensor(gy, ys, dt);
        Tensor y = conv2d(xt, wt, Tensor(), t.stride, t.pad);
        REQUIRE(y.shape() == ys);
        CHECK(testing::max_rel_diff(y, as_tensor(y_ref, ys, DType::F64)) < tol);
        Tensor gx = Tensor::full(xs, 7.0, dt), gw = Tensor::full(ws, 7.0, dt);  // kernels overwrite
        cpu.conv2d_backward_data(gyt, wt, gx, p);
        cpu.conv2d_backward_weight(gyt, xt, gw, p);
        CHECK(testing::max_rel_diff(gx, as_tensor(gx_ref, xs, DType::F64)) < tol);
        CHECK(testing::max_rel_diff(gw, as_tensor(gw_ref, ws, DType::F64)) < tol);
      }
    }
}

// The direct kernels for K ≤ 4 (core/cpu/conv_thin.cpp) at shapes that reach their edges:
// rows of 8-lane vectors with ragged ends (widths 5, 13, 36, 41, 70), blocks of 3 output rows
// with 1 or 2 left over, blocks of 3 outputs with 1 or 2 left over (backward-data's C), pads
// of 0 up to larger than the kernel, kernels larger than the image, several bands per image,
// batches of 2 and 3, and strides 2 (plain loops).
TEST_CASE("conv2d: the direct kernels for 1 to 4 output channels match naive loops (f32 and f64)") {
  const std::vector<ConvCase> cases = {
      {3, 5, 9, 13, 0, 3, 3, 1, 1},    // 3×3 pad 1: the UNet's last layer
      {2, 7, 11, 37, 0, 4, 4, 1, 1},   // 4×4 pad 1: the discriminator's score layer, 10 rows
      {2, 4, 5, 5, 0, 3, 3, 1, 1},     // narrower than one vector
      {2, 3, 6, 5, 0, 1, 1, 1, 0},     // 1×1
      {1, 4, 7, 8, 0, 2, 2, 1, 0},     // even kernel, no pad
      {2, 3, 5, 3, 0, 5, 5, 1, 2},     // kernel wider than the image
      {1, 2, 6, 9, 0, 2, 3, 1, 3},     // pad beyond the kernel: backward-data reads gy cropped
      {2, 3, 9, 41, 0, 3, 5, 1, 2},    // non-square kernel, 41 wide
      {2, 64, 60, 70, 0, 3, 3, 1, 1},  // several bands of rows per image
      {2, 5, 9, 11, 0, 3, 3, 2, 1},    // stride 2
      {1, 3, 10, 9, 0, 4, 4, 2, 1},    // stride 2, even kernel
  };
  Backend& cpu = backend(Device::CPU);
  uint64_t seed = 500;
  for (const ConvCase& shape : cases)
    for (int64_t filters = 1; filters <= 4; ++filters) {
      ConvCase t = shape;
      t.K = filters;
      Generator gen(seed++);
      const Shape xs{t.N, t.C, t.H, t.W}, ws{t.K, t.C, t.kh, t.kw}, ys{t.N, t.K, t.Ho(), t.Wo()};
      const Vec x = Tensor::randn(xs, gen, DType::F64).to_double_vector();
      const Vec w = Tensor::randn(ws, gen, DType::F64).to_double_vector();
      const Vec gy = Tensor::randn(ys, gen, DType::F64).to_double_vector();
      const Vec y_ref = naive_forward(t, x, w);
      Vec gx_ref, gw_ref;
      naive_backward(t, x, w, gy, gx_ref, gw_ref);
      for (DType dt : {DType::F32, DType::F64}) {
        CAPTURE(t.name());
        const std::string dtype = dtype_name(dt);
        CAPTURE(dtype);
        const double tol = dt == DType::F32 ? 2e-5 : 1e-12;
        const Conv2dParams p{t.stride, t.pad};
        Tensor xt = as_tensor(x, xs, dt), wt = as_tensor(w, ws, dt), gyt = as_tensor(gy, ys, dt);
        // Every output starts as NaN: a kernel that skips one, or adds to it, leaves it NaN.
        Tensor y = Tensor::full(ys, NAN, dt), gx = Tensor::full(xs, NAN, dt), gw = Tensor::full(ws, NAN, dt);
        cpu.conv2d_forward(xt, wt, y, p);
        cpu.conv2d_backward_data(gyt, wt, gx, p);
        cpu.conv2d_backward_weight(gyt, xt, gw, p);
        const double y_err = testing::max_rel_diff(y, as_tensor(y_ref, ys, DType::F64));
        const double gx_err = testing::max_rel_diff(gx, as_tensor(gx_ref, xs, DType::F64));
        const double gw_err = testing::max_rel_diff(gw, as_tensor(gw_ref, ws, DType::F64));
        CAPTURE(y_err);
        CAPTURE(gx_err);
        CAPTURE(gw_err);
        CHECK(not_finite(y) + not_finite(gx) + not_finite(gw) == 0);
        CHECK(y_err < tol);
        CHECK(gx_err < tol);
        CHECK(gw_err < tol);
      }
    }
}

TEST_CASE("conv2d: bias is added per output channel") {
  const ConvCase t{2, 3, 6, 5, 4, 3, 3, 2, 1};
  Generator gen(3);
  Tensor x = Tensor::randn({t.N, t.C, t.H, t.W}, gen, DType::F64);
  Tensor w = Tensor::randn({t.K, t.C, t.kh, t.kw}, gen, DType::F64);
  Tensor b = Tensor::randn({t.K}, gen, DType::F64);
  Tensor y = conv2d(x, w, b, t.stride, t.pad), y0 = conv2d(x, w, Tensor(), t.stride, t.pad);
  for (int64_t n = 0; n < t.N; ++n)
    for (int64_t k = 0; k < t.K; ++k)
      for (int64_t i = 0; i < t.Ho(); ++i)
        for (int64_t j = 0; j < t.Wo(); ++j)
          CHECK(y.at({n, k, i, j}) == doctest::Approx(y0.at({n, k, i, j}) + b.at({k})).epsilon(1e-12));
}

TEST_CASE("conv2d: f64 gradients of input, weight and bias match finite differences") {
  const std::vector<ConvCase> cases = {
      {1, 3, 9, 11, 6, 7, 7, 2, 3}, {2, 3, 7, 6, 3, 5, 5, 2, 2}, {2, 4, 5, 6, 5, 3, 3, 1, 1},
      {1, 3, 5, 5, 2, 1, 1, 2, 0},  {1, 2, 6, 7, 3, 2, 2, 2, 1},
  };
  uint64_t seed = 100;
  for (const ConvCase& t : cases) {
    CAPTURE(t.name());
    Tensor x = testing::rand_leaf({t.N, t.C, t.H, t.W}, seed++);
    Tensor w = testing::rand_leaf({t.K, t.C, t.kh, t.kw}, seed++);
    Tensor b = testing::rand_leaf({t.K}, seed++);
    auto f = [&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], t.stride, t.pad); };
    auto r = testing::gradcheck(f, {x, w, b});
    CHECK_MESSAGE(r.ok, r.report);
  }
}

TEST_CASE("conv2d: only the inputs that require grad get one") {
  Generator gen(1);
  Tensor x = Tensor::rand({1, 2, 5, 5}, gen, DType::F64);
  Tensor w = testing::rand_leaf({3, 2, 3, 3}, 2);
  conv2d(x, w, Tensor(), 1, 1).backward(Tensor::ones({1, 3, 5, 5}, DType::F64));
  CHECK(w.grad().defined());
  CHECK(!x.grad().defined());
}

TEST_CASE("conv2d: shape errors name the argument and the shapes") {
  Tensor x = Tensor::zeros({1, 4, 8, 8});
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::zeros({2, 3, 3, 3}), Tensor(), 1, 1),
                       "conv2d: weight has 3 input channels, input has 4", Error);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::zeros({2, 4, 3, 3}), Tensor::zeros({3}), 1, 1),
                       "conv2d: bias has shape [3], expected [2] for weight [2, 4, 3, 3]", Error);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::zeros({2, 4, 11, 11}), Tensor(), 1, 1),
                       "conv2d: kernel 11×11 does not fit input [1, 4, 8, 8] padded by 1", Error);
  CHECK_THROWS_AS(conv2d(x, Tensor::zeros({2, 4, 3, 3}), Tensor(), 0, 1), Error);
  CHECK_THROWS_AS(conv2d(x, Tensor::zeros({2, 4, 3, 3}, DType::F64), Tensor(), 1, 1), Error);
  CHECK_THROWS_AS(conv2d(Tensor::zeros({4, 8, 8}), Tensor::zeros({2, 4, 3, 3}), Tensor(), 1, 1), Error);
}
