// inpaint-bench: how fast the PConvUNet trains and infers on this machine. Measures
//   train       one training step: forward, the paper's full loss (VGG-16 perceptual and style
//               terms with random-init VGG weights, which cost the same as ImageNet ones; or
//               with --vgg none the pixel and TV terms only), backward and Adam; images/s at --batch
//   latency     inference forward (eval, no graph) at batch 1; ms
//   throughput  inference forward at --infer-batch; images/s
//   allreduce   under mpirun -np N: what data parallelism adds to a step: the average of every
//               parameter's gradient over the ranks (MPI, or NCCL for GPU tensors), and the
//               synchronised BatchNorm's small all-reduces (2 per BatchNorm layer)
// each after --warmup untimed iterations, as the median of --iters timed ones, with the peak
// memory (CPU: the process's maximum RSS so far; CUDA: the allocator's peak bytes in use
// during the measure). Prints a markdown table; --json writes the same numbers.
#include <sys/resource.h>

#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "apps/cli/cli.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/cpu/dot_precision.h"
#include "core/cpu/machine_peak.h"
#include "core/data/imagenet.h"
#include "core/data/masks.h"
#include "core/distributed/communicator.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "core/optim.h"
#include "layers/batchnorm.h"
#include "losses/inpainting_loss.h"
#include "models/pconv_unet.h"
#include "models/vgg16.h"
#ifdef PCONV_HAS_CUDA
#include "cuda/allocator.h"
#endif

using namespace pconv;

namespace {

struct Measure {
  std::string name;  // train | latency | throughput | allreduce | bn-sync
  int64_t batch = 0;
  double median_s = 0, min_s = 0;
  double per_second = 0;  // images/s
  double peak_mib = 0;
  double bytes = 0;  // all-reduce measures: bytes each rank contributes per step
  double conv_gflop = 0;  // CPU: the convolutions' flops per iteration (0 elsewhere)
};

double peak_mib(Device device) {
#ifdef PCONV_HAS_CUDA
  if (device == Device::CUDA) return double(cuda_memory_stats().peak_in_use) / (1024.0 * 1024.0);
#endif
  (void)device;
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

void reset_peak(Device device) {
#ifdef PCONV_HAS_CUDA
  if (device == Device::CUDA) cuda_reset_peak_memory();
#endif
  (void)device;
}

// Runs `step` warmup + iters times, timing the last iters (synchronised with the device).
// With several ranks, all start each iteration together and rank 0 reports.
template <typename F>
Measure time_it(const std::string& name, int64_t batch, Device device, int warmup, int iters, F&& step,
                Communicator& ranks = single_process()) {
  reset_peak(device);
  std::vector<double> seconds;
  for (int i = 0; i < warmup + iters; ++i) {
    const bool timed = i >= warmup;
    if (i == warmup) reset_conv_flops();
    if (ranks.size() > 1) any_rank(ranks, false);  // a barrier
    if (ranks.rank() == 0)
      cli::progress("inpaint-bench: " + name + " " + (timed ? "iteration " + std::to_string(i - warmup + 1) + "/" +
                                                                std::to_string(iters)
                                                          : "warm-up " + std::to_string(i + 1) + "/" +
                                                                std::to_string(warmup)));
    const auto t0 = std::chrono::steady_clock::now();
    step();
    backend(device).synchronize();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (timed) seconds.push_back(s);
  }
  std::sort(seconds.begin(), seconds.end());
  Measure m;
  m.name = name;
  m.batch = batch;
  m.median_s = seconds[seconds.size() / 2];
  m.min_s = seconds.front();
  m.per_second = double(batch) / m.median_s;
  m.peak_mib = peak_mib(device);
  if (device == Device::CPU) m.conv_gflop = conv_flops() / iters * 1e-9;
  return m;
}

// Normalised random photos-to-be and generated hole masks, as training sees them.
struct Inputs {
  Tensor image, mask;
};
Inputs make_inputs(int64_t batch, int64_t size, Device device, uint64_t seed) {
  Generator gen(seed);
  Tensor rgb = Tensor::rand({batch, 3, size, size}, gen);
  std::vector<MaskImage> masks;
  for (int64_t i = 0; i < batch; ++i) masks.push_back(generate_mask(size, size, seed, uint64_t(i)));
  Tensor mask = masks_to_batch(masks);
  Tensor x = mul(imagenet_normalize(rgb), mask);
  return {x.to(device), mask.to(device)};
}

// The gradient all-reduce of one step (every parameter's shape, f32) and the synchronised
// BatchNorm's all-reduces (forward: count, Σ n·mean, Σ n·(var + mean²); backward: Σ gy·x̂, Σ gy;
// doubles), as core/ops/batchnorm.cpp makes them.
std::vector<Measure> measure_allreduce(PConvUNet& net, Device device, int warmup, int iters, Communicator& ranks) {
  std::vector<Tensor> grads;
  double grad_bytes = 0;
  for (Tensor* p : net.parameters()) {
    grads.push_back(Tensor::ones(p->shape(), DType::F32, device));
    grad_bytes += double(grads.back().nbytes());
  }
  std::vector<Tensor*> pointers;
  for (Tensor& g : grads) pointers.push_back(&g);
  std::vector<int64_t> channels;
  for (const auto& [name, module] : net.named_modules())
    if (auto* bn = dynamic_cast<BatchNorm2d*>(module)) channels.push_back(bn->channels());
  double bn_bytes = 0;
  for (int64_t c : channels) bn_bytes += double(sizeof(double)) * double(1 + 2 * c + 2 * c);
  std::vector<Measure> out;
  out.push_back(time_it("allreduce", 0, device, warmup, iters, [&] { ranks.allreduce_mean(pointers); }, ranks));
  out.back().bytes = grad_bytes;
  out.push_back(time_it("bn-sync", 0, device, warmup, iters, [&] {
    for (int64_t c : channels) {
      std::vector<double> forward(size_t(1 + 2 * c), 1.0), backward(size_t(2 * c), 1.0);
      ranks.allreduce_sum(forward.data(), forward.size());
      ranks.allreduce_sum(backward.data(), backward.size());
    }
  }, ranks));
  out.back().bytes = bn_bytes;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Benchmark PConvUNet training and inference speed and memory; under mpirun -np N, with --only "
               "allreduce, the communication data-parallel training adds to a step.",
               "inpaint-bench"};
  std::string device_name = "cpu", precision = "fp32", only = "train,latency,throughput", json_path,
              checkpoint_path, fill = "none", vgg = "random";
  int64_t batch = 1, infer_batch = 16, size = 256, levels = 0, width = 64;
  int warmup = 1, iters = 3;
  uint64_t seed = 0;
  bool force = false;
  app.add_option("--device", device_name, "cpu or cuda")->check(cli::device_validator())->capture_default_str();
  app.add_option("--precision", precision,
                 "fp32, or bf16: the CPU's convolutions multiply bf16 operands, summing in f32 (needs AVX512-BF16)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  app.add_option("--batch", batch, "training batch size")->check(cli::positive)->capture_default_str();
  app.add_option("--infer-batch", infer_batch, "batch size of the throughput measure")
      ->check(cli::positive)
      ->capture_default_str();
  app.add_option("--size", size, "square image side")->check(CLI::Range(16, 8192))->capture_default_str();
  app.add_option("--levels", levels, "UNet depth (default: the paper's, 8 at 512, 7 at 256)")
      ->check(CLI::Range(1, 12));
  app.add_option("--fill", fill, "what the network's output is added to: none (the paper's) or harmonic (the bundled model's)")
      ->check(CLI::IsMember({"none", "harmonic"}))
      ->capture_default_str();
  app.add_option("--vgg", vgg,
                 "the training step's loss: random (the paper's full loss, VGG-16 terms on random-init weights, which "
                 "cost the same as ImageNet ones) or none (pixel and TV terms only, as inpaint-train --vgg none)")
      ->check(CLI::IsMember({"random", "none"}))
      ->capture_default_str();
  app.add_option("--width", width, "channels of the first layer")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--warmup", warmup, "untimed iterations before each measure")
      ->check(cli::non_negative)
      ->capture_default_str();
  app.add_option("--iters", iters, "timed iterations per measure (the median is reported)")
      ->check(cli::positive)
      ->capture_default_str();
  app.add_option("--only", only, "comma-separated measures: train, latency, throughput; allreduce (under mpirun)")
      ->capture_default_str();
  app.add_option("--seed", seed, "seed of the random weights and inputs")->capture_default_str();
  app.add_option("--json", json_path, "also write the results as JSON here");
  app.add_option("--write-checkpoint", checkpoint_path,
                 "also save the random-init model (e.g. to time inpaint-run without a trained one)");
  app.add_flag("--force", force, "overwrite existing --json / --write-checkpoint files");

  return cli::run(app, argc, argv, [&] {
    const Device device = cli::parse_device(device_name);
    if (precision == "bf16") {
      if (device != Device::CPU) cli::fail("--precision bf16 is implemented on the CPU only (use fp32)");
      set_cpu_dot_precision(CpuDotPrecision::BF16);  // says so when the CPU lacks AVX512-BF16
    }
    // One process, or one of mpirun's ranks (all run this).
    const std::unique_ptr<Communicator> ranks = make_communicator(device);
    const bool reports = ranks->rank() == 0;
    std::vector<std::string> measures;
    agree_on(*ranks, [&] {  // the same usage errors on every rank: said once
      std::stringstream ss(only);
      for (std::string item; std::getline(ss, item, ',');) {
        if (item != "train" && item != "latency" && item != "throughput" && item != "allreduce")
          cli::fail("--only: '" + item + "' is not one of train, latency, throughput, allreduce");
        if ((item == "allreduce") != (ranks->size() > 1))
          cli::fail(ranks->size() > 1 ? "under mpirun, inpaint-bench measures the all-reduce only (--only allreduce)"
                                      : "--only allreduce needs several ranks: mpirun -np 2 inpaint-bench --only allreduce");
        measures.push_back(item);
      }
      if (measures.empty()) cli::fail("--only: no measure given");
      if (reports && !json_path.empty()) cli::check_can_write(json_path, force);
    });
    if (levels == 0) {
      // The paper's model halves down to a 2×2 bottleneck at 512 (8 levels); so 7 at 256.
      levels = 1;
      while (levels < 8 && (size >> (levels + 1)) >= 2) ++levels;
    }
    if (!checkpoint_path.empty() && !json_path.empty()) cli::check_not_input(checkpoint_path, json_path, "the --json file");
    if (!checkpoint_path.empty()) cli::check_can_write(checkpoint_path, force);

    PConvUNetConfig config;
    config.levels = levels;
    config.width = width;
    if (fill == "harmonic") config.fill = PConvUNetConfig::Fill::Harmonic;
    config.validate();
    PConvUNet net(config, seed, DType::F32, device);
    if (reports)
      cli::progress("inpaint-bench: " + config.describe() + " (" + std::to_string(net.parameter_count()) +
                    " parameters), " + std::to_string(size) + "x" + std::to_string(size) + ", " + device_name +
                    " " + precision + (ranks->size() > 1 ? ", " + ranks->describe() : std::string()));
    if (!checkpoint_path.empty() && reports) net.save_checkpoint(checkpoint_path);

    std::vector<Measure> results;
    double peak_gflops = 0;
    for (const std::string& name : measures) {
      if (name == "allreduce") {
        for (Measure& m : measure_allreduce(net, device, warmup, iters, *ranks)) results.push_back(m);
      } else if (name == "train") {
        VGG16Options vgg_options;
        vgg_options.seed = seed + 1;
        vgg_options.device = device;
        InpaintingLoss loss(vgg == "none" ? nullptr : std::make_shared<VGG16Features>(vgg_options));
        Adam adam(net.named_parameters(), AdamOptions{2e-4});
        const Inputs in = make_inputs(batch, size, device, seed);
        const Tensor gt = in.image;  // the loss only needs a target of the right shape
        net.train();
        results.push_back(time_it("train", batch, device, warmup, iters, [&] {
          adam.zero_grad();
          Tensor out = net.forward(in.image, in.mask);
          Tensor total = loss.compute(out, gt, in.mask).total;
          total.backward();
          adam.step();
        }));
      } else {
        const int64_t n = name == "latency" ? 1 : infer_batch;
        const Inputs in = make_inputs(n, size, device, seed);
        net.eval();
        results.push_back(time_it(name, n, device, warmup, iters, [&] {
          NoGradGuard no_grad;
          Tensor out = net.forward(in.image, in.mask);
        }));
      }
    }

    if (!reports) return;
    if (ranks->size() > 1) {
      // Bus bandwidth as nccl-tests defines it: a ring all-reduce moves 2(N−1)/N of the
      // buffer through each rank's link, so this compares across rank counts.
      const double n = double(ranks->size()), ring = 2.0 * (n - 1.0) / n;
      std::printf("| measure | bytes per rank | median (ms) | min (ms) | algorithm GB/s | bus GB/s |\n");
      std::printf("|---|---:|---:|---:|---:|---:|\n");
      for (const Measure& m : results)
        std::printf("| %s | %.0f | %.3f | %.3f | %.2f | %.2f |\n", m.name.c_str(), m.bytes, m.median_s * 1e3,
                    m.min_s * 1e3, m.bytes / m.median_s / 1e9, ring * m.bytes / m.median_s / 1e9);
      std::printf("\n%s, %s, %s, warm-up %d, median of %d\n", config.describe().c_str(), ranks->describe().c_str(),
                  device_name.c_str(), warmup, iters);
    } else {
      // The convolutions' flops over the whole step's time, against the cores' measured peak
      // of the multiply-adds they run (bf16 dot products under --precision bf16): what fraction
      // of the machine a step uses, the rest being other passes, packing and waiting.
      const bool cpu = device == Device::CPU;
      peak_gflops = !cpu ? 0 : precision == "bf16" ? measured_bf16_dot_peak() : measured_f32_fma_peak();
      std::printf("| measure | batch | median (s) | min (s) | images/s | peak memory (MiB) | conv GF/s | of peak |\n");
      std::printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
      for (const Measure& m : results) {
        const double gfs = m.conv_gflop / m.median_s;
        char rate[32] = "—", share[32] = "—";
        if (cpu) std::snprintf(rate, sizeof rate, "%.1f", gfs);
        if (cpu && peak_gflops > 0) std::snprintf(share, sizeof share, "%.0f %%", 100 * gfs / peak_gflops);
        std::printf("| %s | %lld | %.4f | %.4f | %.3f | %.0f | %s | %s |\n", m.name.c_str(), (long long)m.batch,
                    m.median_s, m.min_s, m.per_second, m.peak_mib, rate, share);
      }
      std::printf("\n%s, %lldx%lld, %s %s, %s, warm-up %d, median of %d; peak memory: %s\n",
                  config.describe().c_str(), (long long)size, (long long)size, device_name.c_str(), precision.c_str(),
                  vgg == "none" ? "pixel + TV loss" : "full loss (random VGG-16)", warmup, iters,
                  device == Device::CPU ? "process max RSS so far" : "CUDA allocator peak in the measure");
      if (cpu)
        std::printf("conv GF/s: the convolutions' 2·N·K·C·kh·kw·Ho·Wo flops per step over the step's time; peak: "
                    "%.1f GF/s, %s measured on %d threads\n",
                    peak_gflops, precision == "bf16" ? "bf16 dot products (VDPBF16PS)" : "f32 FMA", omp_get_max_threads());
    }

    if (!json_path.empty()) {
      nlohmann::json j;
      j["model"] = {{"levels", levels}, {"width", width}, {"parameters", net.parameter_count()}};
      j["size"] = size;
      j["device"] = device_name;
      j["precision"] = precision;
      j["loss"] = vgg == "none" ? "pixel_tv" : "full_random_vgg";
      j["warmup"] = warmup;
      j["iters"] = iters;
      j["peak_memory_kind"] = device == Device::CPU ? "max_rss" : "cuda_allocator_peak";
      j["ranks"] = ranks->size();
      for (const Measure& m : results)
        j["results"].push_back({{"measure", m.name},
                                {"batch", m.batch},
                                {"median_s", m.median_s},
                                {"min_s", m.min_s},
                                {"images_per_s", m.per_second},
                                {"peak_memory_mib", m.peak_mib},
                                {"bytes_per_rank", m.bytes},
                                {"conv_gflop_per_iteration", m.conv_gflop}});
      if (device == Device::CPU) j["peak_gflops"] = peak_gflops;
      write_file_atomic(json_path, j.dump(2) + "\n");
    }
  });
}
