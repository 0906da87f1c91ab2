// The benchmarks' yardsticks (core/cpu/machine_peak.h): the convolution flop counter counts
// 2·N·K·C·kh·kw·Ho·Wo per pass, every pass and path (GEMM, thin K ≤ 4, strided), and the
// measured peaks are positive and finite.
#include <doctest/doctest.h>

#include <cmath>

#include "core/backend.h"
#include "core/cpu/dot_precision.h"
#include "core/cpu/machine_peak.h"
#include "core/tensor.h"

using namespace pconv;

TEST_CASE("conv flop counter: 2·N·K·C·kh·kw·Ho·Wo for each of the three passes") {
  struct Case {
    int64_t N, C, H, W, K, k, stride, pad;
  };
  // A GEMM-path layer, a thin one (K = 3: direct kernels), a strided one, a 1×1.
  for (const Case c : {Case{2, 5, 9, 7, 8, 3, 1, 1}, Case{1, 6, 10, 11, 3, 3, 1, 1}, Case{2, 4, 9, 9, 6, 4, 2, 1},
                       Case{1, 7, 5, 6, 9, 1, 1, 0}}) {
    CAPTURE(c.K);
    CAPTURE(c.stride);
    const int64_t ho = (c.H + 2 * c.pad - c.k) / c.stride + 1, wo = (c.W + 2 * c.pad - c.k) / c.stride + 1;
    Generator gen(3);
    Tensor x = Tensor::randn({c.N, c.C, c.H, c.W}, gen), w = Tensor::randn({c.K, c.C, c.k, c.k}, gen);
    Tensor y = Tensor::empty({c.N, c.K, ho, wo}), gx = Tensor::empty(x.shape()), gw = Tensor::empty(w.shape());
    const Conv2dParams p{c.stride, c.pad};
    Backend& cpu = backend(Device::CPU);
    const double expected = 2.0 * double(c.N * c.K * c.C * c.k * c.k * ho * wo);
    reset_conv_flops();
    cpu.conv2d_forward(x, w, y, p);
    CHECK(conv_flops() == expected);
    cpu.conv2d_backward_data(y, w, gx, p);
    CHECK(conv_flops() == 2 * expected);
    cpu.conv2d_backward_weight(y, x, gw, p);
    CHECK(conv_flops() == 3 * expected);
    reset_conv_flops();
    CHECK(conv_flops() == 0);
  }
}

TEST_CASE("measured multiply-add peaks: positive and finite; bf16 only where the CPU has it") {
  const double f32 = measured_f32_fma_peak(0.01);
  CHECK(std::isfinite(f32));
  CHECK(f32 > 0.1);
  const double bf16 = measured_bf16_dot_peak(0.01);
  if (cpu_has_bf16_dot()) {
    CHECK(std::isfinite(bf16));
    CHECK(bf16 > 0.1);
  } else {
    CHECK(bf16 == 0);
  }
}
