// bench-conv: times the backend's conv2d forward, backward-data and backward-weight at the
// PConv UNet's layer shapes (PAPER.md table) and at a reference shape, median of several
// runs after a warm-up, and prints ms, GFLOP/s (2·N·K·C·kh·kw·Ho·Wo flops per pass) and the
// share of the cores' measured multiply-add peak (core/cpu/machine_peak.h).
// `--precision both` times the f32 and the bf16 kernels of each pass one after the other and
// prints their ratio, so a shared, noisy machine slows both alike.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "apps/cli/cli.h"
#include "core/backend.h"
#include "core/cpu/dot_precision.h"
#include "core/cpu/machine_peak.h"
#include "core/tensor.h"

using namespace pconv;

namespace {

struct Layer {
  std::string name;
  int64_t C, H, K, k, stride;  // square input H×H, square k×k kernel
  int64_t pad = k / 2;
};

// The encoder and decoder convolutions of the UNet at a given input size (one of each kind:
// the repeated 512→512 layers run the same kernel), plus PyTorch's reference shape, and the
// two thin layers of the texture trials (direct loops, K ≤ 4): the last layer of the bundled
// architecture (width 32: 32 + 3 channels in) and the PatchGAN's score layer (256 → 1, 4×4,
// pad 1, after three stride-2 and one stride-1 4×4 layers: (size/8 − 1)² inputs).
std::vector<Layer> layers(int64_t size) {
  return {
      {"ref 64x256^2 3x3", 64, 256, 64, 3, 1},
      {"enc1 7x7 s2", 3, size, 64, 7, 2},
      {"enc2 5x5 s2", 64, size / 2, 128, 5, 2},
      {"enc3 5x5 s2", 128, size / 4, 256, 5, 2},
      {"enc4 3x3 s2", 256, size / 8, 512, 3, 2},
      {"enc5 3x3 s2", 512, size / 16, 512, 3, 2},
      {"enc8 3x3 s2", 512, size / 128, 512, 3, 2},
      {"dec9 3x3", 1024, size / 128, 512, 3, 1},
      {"dec12 3x3", 1024, size / 16, 512, 3, 1},
      {"dec13 3x3", 768, size / 8, 256, 3, 1},
      {"dec14 3x3", 384, size / 4, 128, 3, 1},
      {"dec15 3x3", 192, size / 2, 64, 3, 1},
      {"dec16 3x3", 67, size, 3, 3, 1},
      {"last 35->3 3x3", 35, size, 3, 3, 1},
      {"D score 4x4", 256, size / 8 - 1, 1, 4, 1, 1},
  };
}

std::string chw(int64_t c, int64_t h) {
  return std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(h);
}

template <typename F>
double median_ms(F&& f, int runs) {
  f();  // warm-up: scratch buffers grow, pages fault in
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Times CPU convolution kernels at the PConv UNet's shapes"};
  int64_t size = 512, batch = 1;
  int runs = 5;
  std::string filter, dtype = "f32", precision = "fp32";
  app.add_option("--size", size, "UNet input size (the layers' shapes follow)")->check(CLI::Range(256, 4096));
  app.add_option("--batch", batch, "images per pass")->check(CLI::PositiveNumber);
  app.add_option("--runs", runs, "timed runs per measurement (median)")->check(CLI::PositiveNumber);
  app.add_option("--only", filter, "run layers whose name contains this");
  app.add_option("--dtype", dtype, "f32 or f64")->check(CLI::IsMember({"f32", "f64"}));
  app.add_option("--precision", precision,
                 "fp32, bf16 (f32 tensors, bf16 operands summed in f32; needs AVX512-BF16) or both, side by side")
      ->check(CLI::IsMember({"fp32", "bf16", "both"}));
  // cli::run: its range checks of numbers, and one error line instead of an exception.
  return cli::run(app, argc, argv, [&] {
    const DType dt = dtype == "f64" ? DType::F64 : DType::F32;
    if (precision != "fp32" && dt != DType::F32) throw Error("--precision " + precision + " needs --dtype f32");
    if (precision != "fp32") set_cpu_dot_precision(CpuDotPrecision::BF16);  // says so without AVX512-BF16
    const std::vector<std::string> precisions =
        precision == "both" ? std::vector<std::string>{"fp32", "bf16"} : std::vector<std::string>{precision};
    Backend& cpu = backend(Device::CPU);
    std::printf("conv2d on the CPU, %s, %s, batch %lld, %d threads, median of %d runs\n", dtype.c_str(), precision.c_str(),
                (long long)batch, omp_get_max_threads(), runs);
    // The fraction of the machine a pass uses: its GF/s over the cores' measured peak of the
    // multiply-adds it runs (f32 FMA, or bf16 dot products under bf16).
    const double f32_peak = measured_f32_fma_peak(), bf16_peak = precision == "fp32" ? 0 : measured_bf16_dot_peak();
    std::printf("measured peak on %d threads: f32 FMA %.1f GF/s", omp_get_max_threads(), f32_peak);
    if (bf16_peak > 0) std::printf(", bf16 dot products (VDPBF16PS) %.1f GF/s", bf16_peak);
    std::printf("; %%pk: a pass's share of the peak of what it runs (the thin and smallest passes: f32 FMAs)\n");
    std::printf("%-18s %-14s %-14s %-5s %9s %7s %4s %9s %7s %4s %9s %7s %4s\n", "layer", "input", "output", "prec",
                "fwd ms", "GF/s", "%pk", "bwd-x ms", "GF/s", "%pk", "bwd-w ms", "GF/s", "%pk");
    for (const Layer& l : layers(size)) {
      if (!filter.empty() && l.name.find(filter) == std::string::npos) continue;
      const int64_t pad = l.pad, ho = (l.H + 2 * pad - l.k) / l.stride + 1;
      Generator gen(1);
      Tensor x = Tensor::randn({batch, l.C, l.H, l.H}, gen, dt);
      Tensor w = Tensor::randn({l.K, l.C, l.k, l.k}, gen, dt);
      Tensor y = Tensor::empty({batch, l.K, ho, ho}, dt);
      Tensor gx = Tensor::empty(x.shape(), dt), gw = Tensor::empty(w.shape(), dt);
      const Conv2dParams p{l.stride, pad};
      const double gflop = 2.0 * double(batch * l.K * l.C * l.k * l.k * ho * ho) * 1e-9;
      // [precision][pass] ms; each pass's precisions are timed one right after the other.
      double ms[2][3];
      const std::function<void()> passes[3] = {[&] { cpu.conv2d_forward(x, w, y, p); },
                                                [&] { cpu.conv2d_backward_data(y, w, gx, p); },
                                                [&] { cpu.conv2d_backward_weight(y, x, gw, p); }};
      for (int pass = 0; pass < 3; ++pass)
        for (size_t q = 0; q < precisions.size(); ++q) {
          set_cpu_dot_precision(precisions[q] == "bf16" ? CpuDotPrecision::BF16 : CpuDotPrecision::F32);
          ms[q][pass] = median_ms(passes[pass], runs);
        }
      for (size_t q = 0; q < precisions.size(); ++q) {
        // As core/cpu/conv.cpp routes them (the thin and the smallest passes stay f32 under
        // bf16); f64 FMAs do half the lanes' work.
        const bool bf16_pass = precisions[q] == "bf16" && conv_pass_takes_bf16(l.K, batch * ho * ho);
        const double peak = bf16_pass ? bf16_peak : dt == DType::F64 ? f32_peak / 2 : f32_peak;
        std::printf("%-18s %-14s %-14s %-5s", l.name.c_str(), chw(l.C, l.H).c_str(), chw(l.K, ho).c_str(),
                    precisions[q].c_str());
        for (int pass = 0; pass < 3; ++pass) {
          const double gfs = gflop / ms[q][pass] * 1e3;
          std::printf(" %9.2f %7.1f %4.0f", ms[q][pass], gfs, 100 * gfs / peak);
        }
        std::printf("\n");
      }
      if (precisions.size() == 2)
        std::printf("%-18s %-14s %-14s %-5s %8.2fx %12s %8.2fx %12s %8.2fx\n", "  f32/bf16 time", "", "", "",
                    ms[0][0] / ms[1][0], "", ms[0][1] / ms[1][1], "", ms[0][2] / ms[1][2]);
    }
  });
}
