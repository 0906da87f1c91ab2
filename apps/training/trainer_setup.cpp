// The set-up of a training run (apps/training/trainer.h): the options checked and completed
// from the checkpoint a run starts from, the model, its optimiser, the discriminator, the loss's
// feature network, the photos, the validation set and the logs a resume continues.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "apps/cli/cli.h"
#include "apps/inference/inference.h"
#include "apps/training/checkpoint_metadata.h"
#include "apps/training/progress_text.h"
#include "apps/training/run_folder.h"
#include "apps/training/trainer.h"
#include "core/io/safetensors.h"
#include "layers/batchnorm.h"

namespace pconv {

using namespace training;
namespace fs = std::filesystem;

std::string vgg_missing_message() {
  return "--vgg is required: export torchvision's ImageNet VGG-16 with 'python3 scripts/export_vgg16.py "
         "vgg16_features.safetensors' (needs PyTorch) and pass --vgg vgg16_features.safetensors, or pass "
         "--vgg none to train with the pixel and TV terms only";
}

namespace {

// "random:SEED[:SCALE]": a VGG-16 trunk at SCALE of its width with fixed random weights, the
// feature extractor of the style (and perceptual) terms without ImageNet weights.
struct RandomFeatures {
  uint64_t seed = 0;
  double scale = 0.25;
};
RandomFeatures parse_style_features(const std::string& text) {
  const std::string bad = "--style-features '" + text + "': expected random:SEED or random:SEED:SCALE (SCALE in (0, 1])";
  if (text.rfind("random:", 0) != 0) throw Error(bad);
  const std::string rest = text.substr(7);
  const size_t colon = rest.find(':');
  const std::string seed = rest.substr(0, colon);
  RandomFeatures r;
  const auto [end, ec] = std::from_chars(seed.data(), seed.data() + seed.size(), r.seed);
  if (seed.empty() || ec != std::errc() || end != seed.data() + seed.size()) throw Error(bad);
  if (colon != std::string::npos) {
    const std::string scale = rest.substr(colon + 1);
    const auto [e2, ec2] = std::from_chars(scale.data(), scale.data() + scale.size(), r.scale);
    if (scale.empty() || ec2 != std::errc() || e2 != scale.data() + scale.size() || !(r.scale > 0) || r.scale > 1)
      throw Error(bad);
  }
  return r;
}

}  // namespace

Trainer::Trainer(TrainOptions options, Communicator& ranks) : opt_(std::move(options)), comm_(ranks) {
  // Every rank sets up alone (no communication inside), then they agree: one rank's error
  // stops all of them with its message.
  agree_on(comm_, [&] { setup(); });
  check_ranks_agree("the start",
                    "every rank must read the same --resume or --init checkpoint and the same --data photos "
                    "(a shared file system, or identical copies at the same paths)");
}

// What a run starts from, as setup()'s steps learn it: the --resume or --init checkpoint (none
// for a fresh model), what a resume continues, and how an --init model differs from the file's.
struct Trainer::StartingPoint {
  std::string checkpoint;                    // "" without --resume and --init
  std::map<std::string, std::string> saved;  // its metadata
  bool resuming = false;
  bool saved_finetune = false;               // resuming: the checkpoint's phase,
  double saved_lr = 0;                       // its learning rate
  DatasetState data;                         // and where its data order was
  bool init_adds_fill = false;               // --init from a model without the fill into --fill harmonic
  int64_t init_noise = 0;                    // --init: the checkpoint's noise levels (more may be added)
  bool init_changes_upsample = false;        // --init from a model with the other upsampling
};

// The steps in order: each may throw a one-line Error, and the first one wrong is the one reported.
void Trainer::setup() {
  check_required_options();
  StartingPoint start = read_starting_checkpoint();
  if (start.resuming) take_back_resumed_state(start);
  if (!start.checkpoint.empty()) match_checkpoint_model(start);
  resolve_defaults(start);
  check_texture_options();
  check_run_fits(start);
  if (writes()) prepare_out_folder(start.resuming);

  SafetensorsFile file = build_model(start);
  setup_average(start, file);
  setup_optimizer(start, file);
  setup_discriminator(start.saved, file.tensors, start.checkpoint, start.resuming);
  file = {};  // the optimiser's copies are all that is needed now
  load_vgg();
  setup_data(start);
  if (writes()) {
    load_validation_set();
    restore_logs();
  }
  if (start.resuming) last_checkpoint_ = start.checkpoint;
}

Trainer::~Trainer() = default;

void Trainer::check_required_options() {
  // A resume of a run folder continues there, with the folders it was trained on.
  if (opt_.out_dir.empty() && !opt_.resume.empty()) opt_.out_dir = run_folder_of(opt_.resume);
  if (opt_.data_dir.empty() && opt_.resume.empty()) throw Error("--data is required (or --resume a run)");
  if (opt_.out_dir.empty())
    throw Error(opt_.resume.empty() ? "--out is required"
                                    : "--out is required: " + opt_.resume + " is not in a run's checkpoints/ folder");
  if (opt_.vgg.empty() && !opt_.style_features.empty()) opt_.vgg = "none";  // random features replace VGG
  if (opt_.vgg.empty() && opt_.resume.empty()) throw Error(vgg_missing_message());
  if (!opt_.resume.empty() && !opt_.init.empty()) throw Error("--resume and --init exclude each other");
  if (opt_.device == Device::CUDA && !cuda_available())
    throw Error("--device cuda: " + cuda_unavailable_reason());
}

// What the checkpoint says (read once for its metadata; the model loads the file itself).
Trainer::StartingPoint Trainer::read_starting_checkpoint() {
  StartingPoint start;
  start.resuming = !opt_.resume.empty();
  if (opt_.resume.empty() && opt_.init.empty()) return start;
  start.checkpoint = resolve_checkpoint(opt_.resume.empty() ? opt_.init : opt_.resume);
  const SafetensorsFile file = load_safetensors(start.checkpoint);
  start.saved = file.metadata;
  // A file that says what it is must hold it, before a model of that size is built.
  if (start.saved.count(PConvUNet::kConfigKey)) {
    PConvUNetConfig c;
    try {
      c = PConvUNet::checkpoint_config(start.saved);
    } catch (const Error& e) {
      throw Error(start.checkpoint + ": metadata " + PConvUNet::kConfigKey + ": " + e.what());
    }
    try {
      PConvUNet::check_state_shapes(c, file.tensors);
    } catch (const Error& e) {
      throw Error(start.checkpoint + ": " + e.what());
    }
  }
  return start;
}

// A resume continues the checkpoint's step, phase, learning rate, data order and saved options.
void Trainer::take_back_resumed_state(StartingPoint& start) {
  const std::string& checkpoint = start.checkpoint;
  const std::map<std::string, std::string>& saved = start.saved;
  step_ = meta_int(saved, kStepKey, checkpoint);
  const std::string& phase = meta(saved, kPhaseKey, checkpoint);
  if (phase != "train" && phase != "finetune") bad_meta(checkpoint, kPhaseKey, phase, "'train' or 'finetune'");
  start.saved_finetune = phase == "finetune";
  start.saved_lr = meta_number(saved, kLrKey, checkpoint);
  try {
    start.data = DatasetState::parse(meta(saved, kDataStateKey, checkpoint));
  } catch (const Error& e) {
    throw Error(checkpoint + ": metadata " + kDataStateKey + ": " + e.what());
  }
  const auto o = nlohmann::json::parse(meta(saved, kOptionsKey, checkpoint), nullptr, false);
  if (!o.is_object()) throw Error(checkpoint + ": metadata " + kOptionsKey + " is not a JSON object");
  // The crops, the loss and the feature network continue as they were unless the command
  // line changes them.
  take_back_saved_options(opt_, o, checkpoint);
  if (opt_.data_dir.empty()) throw Error(checkpoint + " does not say which photos it was trained on: give --data");
  if (opt_.vgg.empty() && !opt_.style_features.empty()) opt_.vgg = "none";
  if (opt_.vgg.empty()) throw Error(vgg_missing_message());
  if (opt_.seed && *opt_.seed != start.data.seed)
    throw Error("--seed " + std::to_string(*opt_.seed) + " differs from the checkpoint's " +
                std::to_string(start.data.seed) + ": a resume continues the same data order");
  opt_.seed = start.data.seed;
}

// The model's shape comes from the checkpoint unless given: a resume must keep it, an --init
// may add the fill, add noise levels or change the upsampling.
void Trainer::match_checkpoint_model(StartingPoint& start) {
  const bool resuming = start.resuming;
  const std::string& checkpoint = start.checkpoint;
  const PConvUNetConfig c = PConvUNet::checkpoint_config(start.saved);  // checked by read_starting_checkpoint
  if (opt_.levels == 0) opt_.levels = c.levels;
  if (opt_.width == 0) opt_.width = c.width;
  const std::string saved_fill = c.fill == PConvUNetConfig::Fill::Harmonic ? "harmonic" : "none";
  if (opt_.fill.empty()) opt_.fill = saved_fill;
  if (resuming && opt_.fill != saved_fill)
    throw Error("--fill " + opt_.fill + " differs from the checkpoint's (" + saved_fill +
                "): a resume continues the same model (start a new run with --init)");
  start.init_adds_fill = !resuming && opt_.fill == "harmonic" && saved_fill == "none";
  if (opt_.noise < 0) opt_.noise = c.noise;
  if (resuming && opt_.noise != c.noise)
    throw Error("--noise " + std::to_string(opt_.noise) + " differs from the checkpoint's (" +
                std::to_string(c.noise) + "): a resume continues the same model (start a new run with --init)");
  if (opt_.noise < c.noise)
    throw Error("--noise " + std::to_string(opt_.noise) + " is below " + checkpoint + "'s " + std::to_string(c.noise) +
                ": --init can add noise levels to a model, not remove them");
  start.init_noise = c.noise;
  const std::string saved_upsample = c.upsample == Upsampling::Bilinear ? "bilinear" : "nearest";
  if (opt_.upsample.empty()) opt_.upsample = saved_upsample;
  if (resuming && opt_.upsample != saved_upsample)
    throw Error("--upsample " + opt_.upsample + " differs from the checkpoint's (" + saved_upsample +
                "): a resume continues the same model (start a new run with --init)");
  start.init_changes_upsample = !resuming && opt_.upsample != saved_upsample;
}

// Every option still unset gets its default; the model's and the optimiser's are checked.
void Trainer::resolve_defaults(const StartingPoint& start) {
  if (opt_.upsample.empty()) opt_.upsample = "nearest";
  if (opt_.upsample != "nearest" && opt_.upsample != "bilinear")
    throw Error("--upsample " + opt_.upsample + ": expected nearest or bilinear");
  if (opt_.upsample == "bilinear" && opt_.device != Device::CPU)
    throw Error("--upsample bilinear runs on the CPU only so far (no GPU has run its kernel)");
  if (!(opt_.noise_strength >= 0) || !std::isfinite(opt_.noise_strength))
    throw Error("--noise-strength must be a finite number ≥ 0");
  if (opt_.fill.empty()) opt_.fill = "none";
  if (opt_.noise < 0) opt_.noise = 0;
  opt_.finetune = opt_.finetune || start.saved_finetune;
  if (opt_.size == 0) opt_.size = 256;
  if (opt_.batch == 0) opt_.batch = 6;
  if (opt_.levels == 0) opt_.levels = std::max<int64_t>(1, int64_t(std::lround(std::log2(double(opt_.size)))) - 1);
  if (opt_.width == 0) opt_.width = 64;
  if (opt_.steps == 0) opt_.steps = 1000;
  if (!opt_.seed) opt_.seed = 0;
  // A resume keeps its learning rate unless it switches to the fine-tune phase here.
  if (opt_.lr == 0)
    opt_.lr = start.resuming && opt_.finetune == start.saved_finetune ? start.saved_lr : opt_.finetune ? 5e-5 : 2e-4;
  if (opt_.size < 16) throw Error("--size " + std::to_string(opt_.size) + " is too small (at least 16)");
  if (opt_.batch < 1 || opt_.steps < 1 || opt_.save_every < 1 || opt_.keep < 1 || opt_.val_every < 1 ||
      opt_.sample_every < 1 || opt_.log_every < 1 || opt_.val_count < 0)
    throw Error("--batch, --steps, --save-every, --keep, --val-every, --sample-every, --log-every must be positive");
  if (!(opt_.lr > 0) || !std::isfinite(opt_.lr)) throw Error("--lr must be a positive number");
}

// The texture terms: their weights, the GAN loss and the random style features.
void Trainer::check_texture_options() {
  if (!opt_.adversarial) opt_.adversarial = 0.0;
  if (!opt_.feature_matching) opt_.feature_matching = 0.0;
  for (const auto& [name, value] : {std::pair{"--adversarial", *opt_.adversarial},
                                    {"--feature-matching", *opt_.feature_matching},
                                    {"--style-weight", opt_.style_weight.value_or(0)},
                                    {"--perceptual-weight", opt_.perceptual_weight.value_or(0)},
                                    {"--valid-weight", opt_.valid_weight.value_or(0)},
                                    {"--hole-weight", opt_.hole_weight.value_or(0)},
                                    {"--tv-weight", opt_.tv_weight.value_or(0)},
                                    {"--d-lr", opt_.d_lr}})
    if (!(value >= 0) || !std::isfinite(value)) throw Error(std::string(name) + " must be a finite number ≥ 0");
  if (opt_.d_warmup && *opt_.d_warmup < 0) throw Error("--d-warmup must be ≥ 0");
  if (opt_.hole_block && !(*opt_.hole_block >= 1 && *opt_.hole_block <= opt_.size))
    throw Error("--hole-block " + std::to_string(*opt_.hole_block) + ": the block side must be in [1, --size " +
                std::to_string(opt_.size) + "]");
  if (opt_.ema && !(*opt_.ema >= 0 && *opt_.ema < 1))
    throw Error("--ema " + format("%g", *opt_.ema) + ": the decay must be in [0, 1) (0.999 averages about 1000 steps)");
  if (opt_.gan_loss.empty()) opt_.gan_loss = "hinge";
  try {
    gan_ = parse_gan_loss(opt_.gan_loss);
  } catch (const Error& e) {
    throw Error(std::string("--gan-loss: ") + e.what());
  }
  if (!opt_.style_features.empty()) {
    parse_style_features(opt_.style_features);  // a one-line error before anything is written
    if (opt_.vgg != "none")
      throw Error("--style-features " + opt_.style_features + " replaces --vgg's network: leave out --vgg " + opt_.vgg);
  }
}

// A resume has steps left to train, and the batch splits evenly over the ranks.
void Trainer::check_run_fits(const StartingPoint& start) {
  if (start.resuming && step_ >= opt_.steps)
    throw Error(start.checkpoint + " is at step " + std::to_string(step_) + ", --steps is " +
                std::to_string(opt_.steps) + ": nothing to do (raise --steps)");
  if (opt_.batch % comm_.size() != 0)
    throw Error("--batch " + std::to_string(opt_.batch) + " is not a multiple of the " + std::to_string(comm_.size()) +
                " ranks: every rank takes an equal share of each batch");
}

// The UNet of the resolved options, with the checkpoint's weights, in training mode. Returns the
// checkpoint's file (empty for a fresh model): its optimiser and discriminator state come next.
SafetensorsFile Trainer::build_model(const StartingPoint& start) {
  PConvUNetConfig config;
  config.levels = opt_.levels, config.width = opt_.width;
  config.fill = opt_.fill == "harmonic" ? PConvUNetConfig::Fill::Harmonic : PConvUNetConfig::Fill::None;
  config.noise = opt_.noise;
  config.upsample = opt_.upsample == "bilinear" ? Upsampling::Bilinear : Upsampling::Nearest;
  try {
    config.validate();
  } catch (const Error& e) {
    throw Error("--noise " + std::to_string(opt_.noise) + ": at most --levels − 1 (" + std::to_string(opt_.levels - 1) +
                ") decoder levels");
  }
  model_ = std::make_unique<PConvUNet>(config, *opt_.seed, DType::F32, opt_.device);
  SafetensorsFile file;
  const bool init_adds_noise = !start.resuming && !start.checkpoint.empty() && opt_.noise > start.init_noise;
  if (start.init_adds_fill || init_adds_noise || start.init_changes_upsample)
    file = load_init_into_other_model(start, config, init_adds_noise);
  else if (!start.checkpoint.empty())
    file = model_->load_checkpoint(start.checkpoint);
  model_->train();
  model_->set_finetune(opt_.finetune);
  // Synchronised BatchNorm: N ranks normalise as one process with their batches together.
  if (comm_.size() > 1)
    for (const auto& [name, module] : model_->named_modules())
      if (auto* bn = dynamic_cast<BatchNorm2d*>(module)) bn->set_sync(&comm_);
  return file;
}

// --init into a model that differs from the file's. The weights of a model without the fill,
// its last layer zeroed: the new model starts exactly at the harmonic fill and learns what to
// add, keeping the trained features. New noise strengths start at --noise-strength (0: the
// model starts exactly where the file was). Another upsampling keeps every weight (the shapes
// are the same).
SafetensorsFile Trainer::load_init_into_other_model(const StartingPoint& start, const PConvUNetConfig& config,
                                                    bool init_adds_noise) {
  const std::string& checkpoint = start.checkpoint;
  SafetensorsFile file = load_safetensors(checkpoint);
  std::map<std::string, Tensor> weights;
  for (auto& [name, t] : file.tensors)
    if (!PConvUNet::is_training_state_key(name)) weights.emplace(name, t);
  const std::string last = "pconv" + std::to_string(model_->layer_count());
  if (start.init_adds_fill)
    for (const char* p : {".weight", ".bias"}) {
      auto it = weights.find(last + p);
      if (it != weights.end()) it->second = Tensor::zeros(it->second.shape(), it->second.dtype());
    }
  for (const auto& [name, shape] : config.state_shapes())
    if (name.size() > 6 && name.compare(name.size() - 6, 6, ".noise") == 0 && !weights.count(name))
      weights[name] = Tensor::full(shape, opt_.noise_strength);
  try {
    model_->load_state_dict(weights, true);
  } catch (const Error& e) {
    throw Error(checkpoint + ": " + e.what());
  }
  if (!writes() || opt_.quiet) return file;
  if (start.init_adds_fill)
    cli::progress("inpaint-train: --fill harmonic from " + checkpoint + ": its weights, " + last +
                  " zeroed, so training starts at the harmonic fill");
  if (init_adds_noise)
    cli::progress("inpaint-train: --noise " + std::to_string(opt_.noise) + " from " + checkpoint +
                  (opt_.noise_strength > 0 ? ": new noise strengths start at " + format("%g", opt_.noise_strength)
                                           : std::string(": new noise strengths start at 0, so training starts at its output")));
  if (start.init_changes_upsample)
    cli::progress("inpaint-train: --upsample " + opt_.upsample + " from " + checkpoint +
                  ": its weights, with the other upsampling (training starts near its output)");
  return file;
}

// --ema: the average starts at the weights training starts from. A resume of a run with it takes
// the average back (the checkpoint's model) and trains on from the live weights saved beside it;
// a resume with --ema 0 trains on from the live weights and drops the average.
void Trainer::setup_average(const StartingPoint& start, const SafetensorsFile& file) {
  std::map<std::string, Tensor> live;
  const std::string prefix = kLivePrefix;
  if (start.resuming)
    for (const auto& [name, t] : file.tensors)
      if (name.rfind(prefix, 0) == 0) live.emplace(name.substr(prefix.size()), t);
  const bool on = opt_.ema.value_or(0) > 0;
  try {
    if (on) ema_ = std::make_unique<WeightAverage>(*model_, *opt_.ema);
    if (live.empty()) return;
    if (on) ema_->load(model_->state_dict(), meta_int(start.saved, kEmaUpdatesKey, start.checkpoint));
    model_->load_state_dict(live);
  } catch (const Error& e) {
    throw Error(start.checkpoint + ": " + e.what());
  }
}

// Adam over the generator's parameters; a resume takes its moments back from the checkpoint.
void Trainer::setup_optimizer(const StartingPoint& start, const SafetensorsFile& file) {
  adam_ = std::make_unique<Adam>(model_->named_parameters(), AdamOptions{opt_.lr});
  if (!start.resuming) return;
  try {
    adam_->load_state_dict(file.tensors);
  } catch (const Error& e) {
    throw Error(start.checkpoint + ": " + e.what());
  }
}

// The photo loader: this rank's share of each batch, from the checkpoint's place in the data
// order when resuming.
void Trainer::setup_data(const StartingPoint& start) {
  DatasetOptions d;
  d.image_dir = opt_.data_dir, d.mask_dir = opt_.mask_dir, d.mask_holes = opt_.mask_holes;
  d.size = opt_.size, d.batch = opt_.batch, d.seed = *opt_.seed;
  // The defaults are this machine's share: its ranks split its memory and cores.
  const int64_t local_ranks = launched_local_size();
  d.cache_bytes = opt_.cache_gib >= 0
                      ? int64_t(opt_.cache_gib * double(int64_t(1) << 30))
                      : std::clamp<int64_t>(inference::available_memory_bytes() / 4, 0, int64_t(8) << 30) / local_ranks;
  d.workers = int(opt_.workers > 0 ? opt_.workers
                  : opt_.device == Device::CPU
                      ? 1
                      : std::clamp<int64_t>(int64_t(std::thread::hardware_concurrency()) / local_ranks, 1, 8));
  d.shard = comm_.rank(), d.shards = comm_.size();
  // A residual model's fill depends on the batch alone: the loader's threads solve it while this
  // thread trains on the previous batch (about 12 % of a CPU texture step, measured: docs/performance.md).
  d.harmonic_fill = opt_.fill_in_loader && model_->config().fill == PConvUNetConfig::Fill::Harmonic;
  data_ = std::make_unique<TrainingData>(d, start.resuming ? start.data : DatasetState{*opt_.seed, 0, 0});
  if (writes() && start.resuming && start.saved.count(kDataCountKey) &&
      meta_int(start.saved, kDataCountKey, start.checkpoint) != data_->samples_per_epoch())
    warn("the checkpoint was trained on " + start.saved.at(kDataCountKey) + " photos, --data holds " +
         std::to_string(data_->samples_per_epoch()) + ": the data order differs from the original run");
}

void Trainer::load_vgg() {
  LossWeights w;
  if (opt_.vgg != "none") {
    VGG16Options v;
    v.device = opt_.device;
    vgg_ = std::make_shared<VGG16Features>(v);
    vgg_->load_torchvision(opt_.vgg);
  } else if (!opt_.style_features.empty()) {
    // Random filters capture texture statistics (Ustyuzhaninov et al. 2017): Gram matrices of
    // a frozen random trunk stand in for ImageNet VGG's. Its perceptual term compares random
    // projections of the pixels, which the pixel loss already does better: 0 unless asked.
    const RandomFeatures r = parse_style_features(opt_.style_features);
    VGG16Options v;
    v.width_scale = r.scale, v.seed = r.seed, v.device = opt_.device;
    vgg_ = std::make_shared<VGG16Features>(v);
    w.perceptual = 0;
  }
  if (opt_.style_weight) w.style = *opt_.style_weight;
  if (opt_.perceptual_weight) w.perceptual = *opt_.perceptual_weight;
  if (opt_.valid_weight) w.valid = *opt_.valid_weight;
  if (opt_.hole_weight) w.hole = *opt_.hole_weight;
  if (opt_.tv_weight) w.tv = *opt_.tv_weight;
  if (opt_.hole_block) w.hole_block = *opt_.hole_block;
  loss_ = std::make_unique<InpaintingLoss>(vgg_, w);
}

void Trainer::setup_discriminator(const std::map<std::string, std::string>& saved,
                                  const std::map<std::string, Tensor>& tensors, const std::string& checkpoint,
                                  bool resuming) {
  const bool wanted = *opt_.adversarial > 0 || *opt_.feature_matching > 0;
  const bool saved_disc = resuming && saved.count(kDiscConfigKey) > 0;
  if (!wanted) {
    if (opt_.d_width || opt_.d_layers || opt_.d_lr > 0 || opt_.d_warmup.value_or(0) > 0 || !opt_.d_target.empty())
      throw Error("--d-width, --d-layers, --d-lr, --d-target and --d-warmup need a discriminator: give --adversarial "
                  "or --feature-matching");
    return;
  }
  // --init of a file with a discriminator (a checkpoint, or `inpaint-export --with-discriminator`)
  // continues its weights when the options ask for the same one: a trained discriminator is
  // what makes the first steps of a continued texture run useful. Its Adam state starts fresh.
  const bool init_disc = !resuming && init_discriminator_fits(saved, checkpoint);
  const PatchDiscriminatorConfig c = discriminator_config(saved_disc || init_disc ? &saved : nullptr, checkpoint);
  opt_.d_width = c.width, opt_.d_layers = c.layers;
  if (opt_.d_lr == 0)
    opt_.d_lr = saved_disc && saved.count(kDiscLrKey) ? meta_number(saved, kDiscLrKey, checkpoint) : 4 * opt_.lr;
  // Its own seed stream, so adding a discriminator leaves the generator's initial weights as they were.
  disc_ = std::make_unique<PatchDiscriminator>(c, *opt_.seed ^ 0x9e3779b97f4a7c15ULL, DType::F32, opt_.device);
  // β1 0.5 as GAN discriminators are usually trained (DCGAN): less momentum against a moving target.
  d_adam_ = std::make_unique<Adam>(disc_->named_parameters(), AdamOptions{opt_.d_lr, 0.5, 0.999});
  if (saved_disc) {
    std::map<std::string, Tensor> weights, state;
    const std::string dp = kDiscPrefix, op = kDiscOptimPrefix;
    for (const auto& [name, t] : tensors) {
      if (name.rfind(dp, 0) == 0) weights.emplace(name.substr(dp.size()), t);
      if (name.rfind(op, 0) == 0) state.emplace("optim." + name.substr(op.size()), t);
    }
    try {
      disc_->load_state_dict(weights, true);
      d_adam_->load_state_dict(state);
    } catch (const Error& e) {
      throw Error(checkpoint + ": discriminator: " + e.what());
    }
  } else if (init_disc) {
    std::map<std::string, Tensor> weights;
    const std::string dp = kDiscPrefix;
    for (const auto& [name, t] : tensors)
      if (name.rfind(dp, 0) == 0) weights.emplace(name.substr(dp.size()), t.to(DType::F32));
    try {
      disc_->load_state_dict(weights, true);
    } catch (const Error& e) {
      throw Error(checkpoint + ": discriminator: " + e.what());
    }
    if (writes() && !opt_.quiet)
      cli::progress("inpaint-train: continuing " + checkpoint + "'s discriminator (" + c.describe() + "), fresh Adam");
  } else if (resuming && writes() && !opt_.quiet) {
    cli::progress("inpaint-train: the checkpoint has no discriminator: a fresh one starts here");
  }
}

// Whether an --init file holds a discriminator the options accept: the same input (--d-target)
// and, where given, the same width and depth. One that differs is left out, with a note.
bool Trainer::init_discriminator_fits(const std::map<std::string, std::string>& saved, const std::string& checkpoint) {
  if (!saved.count(kDiscConfigKey)) return false;
  PatchDiscriminatorConfig f;
  try {
    f = PatchDiscriminatorConfig::from_json(saved.at(kDiscConfigKey));
  } catch (const Error& e) {
    throw Error(checkpoint + ": metadata " + kDiscConfigKey + ": " + e.what());
  }
  const int64_t in_channels = opt_.d_target == "hole" ? 3 : 4;
  const bool fits = f.in_channels == in_channels && (!opt_.d_width || opt_.d_width == f.width) &&
                    (!opt_.d_layers || opt_.d_layers == f.layers);
  if (!fits && writes() && !opt_.quiet)
    cli::progress("inpaint-train: " + checkpoint + "'s discriminator (" + f.describe() +
                  ") is not the one asked for: a fresh one starts");
  return fits;
}

// The discriminator's shape: a resume's (`saved`, the checkpoint's metadata; the options must
// agree with it) or the options' (width 32, 3 layers); its input follows --d-target.
PatchDiscriminatorConfig Trainer::discriminator_config(const std::map<std::string, std::string>* saved,
                                                       const std::string& checkpoint) {
  if (opt_.d_target.empty()) opt_.d_target = "composite";
  if (opt_.d_target != "composite" && opt_.d_target != "hole")
    throw Error("--d-target '" + opt_.d_target + "': expected composite or hole");
  const int64_t in_channels = opt_.d_target == "hole" ? 3 : 4;  // the hole target: no mask channel
  PatchDiscriminatorConfig c;
  if (saved) {
    try {
      c = PatchDiscriminatorConfig::from_json(saved->at(kDiscConfigKey));
    } catch (const Error& e) {
      throw Error(checkpoint + ": metadata " + kDiscConfigKey + ": " + e.what());
    }
    if ((opt_.d_width && opt_.d_width != c.width) || (opt_.d_layers && opt_.d_layers != c.layers))
      throw Error("--d-width/--d-layers differ from the checkpoint's discriminator (width " + std::to_string(c.width) +
                  ", " + std::to_string(c.layers) + " layers): a resume continues the same discriminator");
    if (c.in_channels != in_channels)
      throw Error("--d-target " + opt_.d_target + " differs from the checkpoint's discriminator (it " +
                  (c.in_channels == 3 ? "finds the hole" : "sees the mask") +
                  "): a resume continues the same discriminator");
  } else {
    c.in_channels = in_channels;
    c.width = opt_.d_width ? opt_.d_width : 32;
    c.layers = opt_.d_layers ? opt_.d_layers : 3;
    try {
      c.validate();
    } catch (const Error& e) {
      throw Error(std::string("--d-width/--d-layers: ") + e.what());
    }
  }
  const int64_t min_side = (int64_t(1) << c.layers) * 4;
  if (opt_.size < min_side)
    throw Error("--size " + std::to_string(opt_.size) + " is too small for a discriminator of " +
                std::to_string(c.layers) + " strided layers (at least " + std::to_string(min_side) + ")");
  return c;
}

void Trainer::prepare_out_folder(bool resuming) {
  cli::ensure_folder(opt_.out_dir);
  cli::ensure_folder((fs::path(opt_.out_dir) / "checkpoints").string());
  cli::ensure_folder((fs::path(opt_.out_dir) / "samples").string());
  // A run killed while writing leaves "<file>.tmp-<pid>" behind (the file itself is intact).
  for (const char* sub : {"", "checkpoints", "samples"}) remove_stale_temp_files((fs::path(opt_.out_dir) / sub).string());
  // Fail now, not after an hour of training, when nothing can be written there.
  const std::string probe = (fs::path(opt_.out_dir) / ".write-test").string();
  try {
    write_file_atomic(probe, "ok\n");
  } catch (const Error&) {
    throw Error(opt_.out_dir + ": cannot write in this folder");
  }
  std::error_code ec;
  fs::remove(probe, ec);
  if (!resuming && !list_checkpoints(opt_.out_dir).empty())
    throw Error(opt_.out_dir + " holds checkpoints of an earlier run: continue it with --resume " + opt_.out_dir +
                ", or choose another --out");
}

void Trainer::load_validation_set() {
  if (!opt_.val_dir.empty()) {
    val_ = make_validation_set(opt_.val_dir, opt_.size, *opt_.seed);
  } else {
    // Without held-out photos, the first samples of epoch 0 serve as the fixed set.
    const int64_t n = std::min(opt_.val_count > 0 ? opt_.val_count : 8, data_->samples_per_epoch());
    for (int64_t i = 0; i < n; ++i) {
      ValidationSample s;
      s.name = "train-" + std::to_string(i);
      data_->sample(0, i, s.image, s.mask);
      val_.push_back(std::move(s));
    }
  }
  if (opt_.val_count > 0 && int64_t(val_.size()) > opt_.val_count) val_.resize(size_t(opt_.val_count));
}

void Trainer::restore_logs() {
  const std::string log = (fs::path(opt_.out_dir) / "log.csv").string();
  const std::string val = (fs::path(opt_.out_dir) / "val.csv").string();
  for (const auto& r : truncate_log(log, kLogHeader, kLegacyLogHeader, step_))
    if (r.size() >= 14)
      history_.push_back({int64_t(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[9], r[10], r[11], r[12], r[13]});
  for (const auto& r : truncate_log(val, kValHeader, kLegacyValHeader, step_))
    if (r.size() >= 6) val_history_.push_back({int64_t(r[0]), r[1], r[2], r[3], r[4], r[5]});
}

}  // namespace pconv
