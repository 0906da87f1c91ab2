// inpaint-train: trains the PConv UNet on a folder of photos with the paper's loss and Adam
// (PAPER.md "Training"), writing checkpoints, logs, loss curves, sample grids and validation
// metrics below --out. Ctrl-C (or SIGTERM) finishes the current step, saves, and exits 0;
// --resume continues bit for bit. Under mpirun, every rank trains on its share of each batch
// (core/distributed/communicator.h, apps/training/trainer.h); SIGUSR1, which mpirun forwards to every rank,
// stops the job like Ctrl-C does a single process.
#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <memory>
#include <string>

#include "apps/cli/cli.h"
#include "apps/training/trainer.h"
#include "core/cpu/dot_precision.h"

using namespace pconv;

namespace {

std::atomic<bool> g_stop{false};

extern "C" void request_stop(int) { g_stop.store(true); }

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = request_stop;
  sigemptyset(&sa.sa_mask);
  // A second Ctrl-C takes the default action: the user can always kill a stuck run.
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train the partial-convolution inpainting UNet (Liu et al. 2018) on a folder of photos. "
               "On several processes: mpirun -np N inpaint-train ... (each takes --batch/N of every batch).",
               "inpaint-train"};
  TrainOptions o;
  std::string holes = "white", device = "cpu", precision = "fp32";
  uint64_t seed = 0;
  app.add_option("--data", o.data_dir, "folder of training photos (searched recursively) [a resume: the run's]");
  app.add_option("--out", o.out_dir, "folder for checkpoints, logs, plots and samples [a resume: the run's folder]");
  app.add_option("--vgg", o.vgg,
                 "torchvision VGG-16 weights (safetensors, from scripts/export_vgg16.py), or 'none' for the "
                 "pixel and TV terms only");
  app.add_option("--val", o.val_dir, "folder of validation photos (default: the first training samples)");
  app.add_option("--masks", o.mask_dir, "folder of mask images to augment (default: generated masks)");
  app.add_option("--mask-holes", holes, "colour of holes in the --masks files")
      ->check(cli::mask_holes_validator())
      ->capture_default_str();
  app.add_option("--size", o.size, "square crop size [256; a resume keeps the checkpoint's]");
  app.add_option("--batch", o.batch, "images per step [6; a resume keeps the checkpoint's]");
  app.add_option("--levels", o.levels, "UNet depth [log2(size)-1: 7 at 256, 8 at 512]");
  app.add_option("--width", o.width, "channels of the first layer [64]");
  app.add_option("--noise", o.noise,
                 "decoder levels (from half size down) that add learned-strength noise in the holes, to grow "
                 "texture from (strengths start at 0: --init from a model without noise starts at its output) "
                 "[0; the checkpoint's]")
      ->check(CLI::Range(int64_t(0), int64_t(15)));
  app.add_option("--noise-strength", o.noise_strength,
                 "where --init adds noise levels, their strengths start here instead of 0 (an adversarial run "
                 "moves strengths of 0 slowly)")
      ->check(cli::non_negative);
  app.add_option("--upsample", o.upsample,
                 "decoder upsampling of features: nearest (the paper's) or bilinear (no blocky grid under "
                 "adversarial training; CPU only) [nearest; the checkpoint's]")
      ->check(CLI::IsMember({"nearest", "bilinear"}));
  app.add_option("--fill", o.fill,
                 "none: the paper's model; harmonic: the network adds to a harmonic fill of the holes "
                 "(with --init from a model without it, training starts at the fill) [none; the checkpoint's]")
      ->check(CLI::IsMember({"none", "harmonic"}));
  app.add_option("--lr", o.lr, "Adam learning rate [2e-4; 5e-5 with --finetune]");
  app.add_option("--steps", o.steps, "total optimisation steps, which a resume continues up to [1000; the checkpoint's]")
      ->check(CLI::PositiveNumber);
  auto* seed_option = app.add_option("--seed", seed, "seed of the data order, masks and initial weights [0]");
  app.add_flag("--finetune", o.finetune, "phase 2 of the paper: encoder BatchNorms frozen, lr 5e-5");
  app.add_option("--init", o.init, "start from this checkpoint's weights (step 0, fresh optimiser)");
  app.add_option("--resume", o.resume, "continue exactly from a checkpoint, or from the latest in a run folder");
  app.add_option("--save-every", o.save_every, "steps between checkpoints")->capture_default_str();
  app.add_option("--keep", o.keep, "checkpoints kept (the oldest are deleted)")->capture_default_str();
  app.add_option("--val-every", o.val_every, "steps between validations")->capture_default_str();
  app.add_option("--sample-every", o.sample_every, "steps between sample grids")->capture_default_str();
  app.add_option("--val-count", o.val_count, "validation pairs used (0: all of --val)")->capture_default_str();
  app.add_option("--log-every", o.log_every, "steps between progress lines")->capture_default_str();
  app.add_option("--workers", o.workers, "threads decoding photos [1 on cpu, cores up to 8 on cuda]")
      ->check(cli::non_negative);
  app.add_option("--cache-gib", o.cache_gib,
                 "GiB of decoded photos kept in memory, so later epochs skip decoding [a quarter of the free memory, at most 8]")
      ->check(cli::non_negative);
  app.add_option("--time-limit", o.time_limit, "seconds of training after which it saves and stops (0: no limit)")
      ->check(cli::non_negative)
      ->capture_default_str();
  app.add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  app.add_option("--precision", precision,
                 "fp32, or bf16: the CPU's convolutions multiply bf16 operands, summing in f32 (needs AVX512-BF16; "
                 "weights, BatchNorm, losses and Adam stay f32)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();

  // Texture: what pixel losses average away (docs/training.md, "Texture").
  double adversarial = 0, feature_matching = 0, style_weight = 0, perceptual_weight = 0;
  double valid_weight = 0, hole_weight = 0, tv_weight = 0;
  auto* adv_option = app.add_option("--adversarial", adversarial,
                                    "weight of the adversarial loss of a PatchGAN discriminator scoring the "
                                    "composite (0: none) [0; a resume keeps the checkpoint's]")
                         ->check(cli::non_negative);
  auto* fm_option = app.add_option("--feature-matching", feature_matching,
                                   "weight of discriminator feature matching (l1 between its features of the "
                                   "composite and of the truth) [0; the checkpoint's]")
                        ->check(cli::non_negative);
  app.add_option("--gan-loss", o.gan_loss, "hinge or nonsaturating [hinge; the checkpoint's]")
      ->check(CLI::IsMember({"hinge", "nonsaturating"}));
  app.add_option("--d-lr", o.d_lr, "the discriminator's Adam learning rate [4 x --lr; the checkpoint's]")
      ->check(cli::non_negative);
  int64_t d_warmup = 0;
  auto* warmup_option = app.add_option("--d-warmup", d_warmup,
                                       "first steps that train the discriminator alone (the generator leaves out "
                                       "its terms) [0; the checkpoint's]")
                            ->check(cli::non_negative);
  app.add_option("--d-target", o.d_target,
                 "composite: the discriminator sees the image and its mask and calls every composite patch made "
                 "up; hole: it sees the image alone and must find the hole (LaMa), so the generator learns to hide "
                 "the hole's edges [composite; the checkpoint's]")
      ->check(CLI::IsMember({"composite", "hole"}));
  app.add_option("--d-width", o.d_width, "channels of the discriminator's first layer [32]")->check(cli::non_negative);
  app.add_option("--d-layers", o.d_layers, "strided layers of the discriminator (3: 70x70 patches) [3]")
      ->check(cli::non_negative);
  app.add_option("--style-features", o.style_features,
                 "random:SEED[:SCALE]: the style term on a VGG-16 trunk at SCALE of its width (0.25) with fixed "
                 "random weights, instead of --vgg's ImageNet network [the checkpoint's]");
  auto* style_option = app.add_option("--style-weight", style_weight, "weight of the style terms [120, the paper's]")
                           ->check(cli::non_negative);
  auto* perc_option =
      app.add_option("--perceptual-weight", perceptual_weight,
                     "weight of the perceptual term [0.05, the paper's; 0 with --style-features random]")
          ->check(cli::non_negative);
  auto* valid_option = app.add_option("--valid-weight", valid_weight, "weight of the l1 term on known pixels [1]")
                           ->check(cli::non_negative);
  auto* hole_option =
      app.add_option("--hole-weight", hole_weight, "weight of the l1 term in the holes [6, the paper's]")
          ->check(cli::non_negative);
  auto* tv_option = app.add_option("--tv-weight", tv_weight, "weight of total variation around the holes [0.1]")
                        ->check(cli::non_negative);
  int64_t hole_block = 1;
  auto* hole_block_option =
      app.add_option("--hole-block", hole_block,
                     "compare the hole's pixels as means of KxK blocks: an l1 per pixel is least for a blur, on "
                     "block means it keeps colours and shapes and leaves finer detail to the texture terms "
                     "[1: per pixel, the paper's; the checkpoint's]")
          ->check(CLI::PositiveNumber);
  double ema = 0;
  auto* ema_option =
      app.add_option("--ema", ema,
                     "decay of a moving average of the generator's weights (0.999: about the last 1000 steps), "
                     "which validation, samples and the checkpoints' model use; 0: none [0; the checkpoint's]")
          ->check(cli::non_negative);

  return cli::run(app, argc, argv, [&] {
    if (precision == "bf16") {
      if (device != "cpu") cli::fail("--precision bf16 is implemented on the CPU only (use fp32)");
      set_cpu_dot_precision(CpuDotPrecision::BF16);  // says so when the CPU lacks AVX512-BF16
    }
    o.mask_holes = parse_mask_holes(holes);
    o.device = device == "cuda" ? Device::CUDA : Device::CPU;
    if (seed_option->count() > 0) o.seed = seed;
    if (adv_option->count() > 0) o.adversarial = adversarial;
    if (fm_option->count() > 0) o.feature_matching = feature_matching;
    if (style_option->count() > 0) o.style_weight = style_weight;
    if (perc_option->count() > 0) o.perceptual_weight = perceptual_weight;
    if (valid_option->count() > 0) o.valid_weight = valid_weight;
    if (hole_option->count() > 0) o.hole_weight = hole_weight;
    if (tv_option->count() > 0) o.tv_weight = tv_weight;
    if (hole_block_option->count() > 0) o.hole_block = hole_block;
    if (warmup_option->count() > 0) o.d_warmup = d_warmup;
    if (ema_option->count() > 0) o.ema = ema;
    // One process, or one rank of mpirun's job (then every rank runs this same line).
    const std::unique_ptr<Communicator> ranks = make_communicator(o.device);
    cli::run_on_ranks(app.get_name(), *ranks, [&] {
      Trainer trainer(o, *ranks);
      install_stop_handlers();
      trainer.run(&g_stop);
    });
  });
}
