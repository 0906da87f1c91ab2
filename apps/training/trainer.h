#pragma once
// The training loop of inpaint-train as a library, so tests drive exactly what the app runs:
// data (core/data/dataset.h), the PConv UNet, the paper's loss, Adam, validation, logs, plots and
// checkpoints that resume bit for bit (PAPER.md "Training").
//
// Everything a run writes goes below options.out:
//   checkpoints/step-<8 digits>.safetensors  weights, BatchNorm statistics, Adam state (optim.*),
//                                            metadata: step, phase, lr, data state, seeds, options
//   log.csv        every loss term of every step
//   val.csv        validation loss, PSNR, SSIM, l1 % on a fixed set of (image, mask) pairs
//   loss.png       the loss curves, redrawn at each checkpoint
//   samples/step-<8 digits>.png   input | mask | output | composite | ground truth, one row each
//
// Data parallelism (core/distributed/communicator.h): with a communicator of N ranks, every rank runs one
// Trainer; each takes batch/N samples of every batch (the same batches as one process), the
// BatchNorms use the statistics of all N shares together, the losses and gradients are
// averaged over the ranks, and Adam makes the same update everywhere. Only rank 0 writes
// (checkpoints, logs, plots, samples, validation). The constructor, run(), train_step() and
// save_checkpoint() are collective: every rank makes the same calls.
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "apps/training/run_folder.h"  // list_checkpoints, resolve_checkpoint
#include "core/data/dataset.h"
#include "core/distributed/communicator.h"
#include "core/optim.h"
#include "layers/weight_average.h"
#include "losses/adversarial.h"
#include "losses/inpainting_loss.h"
#include "models/patch_discriminator.h"
#include "models/pconv_unet.h"

namespace pconv {

struct TrainOptions {
  std::string data_dir;         // training photos (recursive)
  std::string val_dir;          // validation photos; empty: the first training samples
  std::string mask_dir;         // mask files to augment; empty: the built-in generator
  MaskHoles mask_holes = MaskHoles::White;
  std::string out_dir;
  std::string vgg = "";         // torchvision VGG-16 safetensors, or "none" (pixel + TV terms)
  std::string init;             // checkpoint to take the weights from (step 0, fresh Adam)
  std::string resume;           // checkpoint (or run folder: its latest) to continue exactly

  // 0 / unset: the checkpoint's value when resuming or initialising, else the default in ().
  int64_t size = 0;             // square crops (256)
  int64_t batch = 0;            // (6)
  int64_t levels = 0;           // UNet depth (log2(size) − 1: 7 at 256, 8 at 512)
  int64_t width = 0;            // channels of the first layer (64)
  std::string fill;             // "none" (the paper's model) or "harmonic" (residual on a harmonic fill) (none)
  int64_t noise = -1;           // decoder levels with noise injection (PConvUNetConfig::noise) (0; the checkpoint's)
  double noise_strength = 0;    // where --init adds noise levels, their strengths start here (0: at the file's output)
  std::string upsample;         // "nearest" (the paper's) or "bilinear" (PConvUNetConfig::upsample) (nearest; the checkpoint's)
  double lr = 0;                // (2e-4; 5e-5 when fine-tuning)
  std::optional<uint64_t> seed; // data order, masks, initial weights (0)

  int64_t steps = 0;            // total steps of the run, which a resume continues up to (0: the checkpoint's, else 1000)
  bool finetune = false;        // paper's phase 2: encoder BatchNorms frozen
  int64_t save_every = 500, keep = 3;
  int64_t val_every = 250, sample_every = 250, val_count = 8;
  int64_t log_every = 10;       // progress line on stderr
  double time_limit = 0;        // seconds of training after which run() saves and stops (0: none)
  int64_t workers = 0;          // threads decoding photos (0: 1 on the CPU, up to 8 with CUDA)
  double cache_gib = -1;        // decoded photos kept in memory (< 0: a quarter of the free memory, at most 8 GiB)
  Device device = Device::CPU;
  bool quiet = false;           // no progress lines (tests)
  // A residual model's harmonic fill made by the data loader's threads; false: by the model's
  // forward on this thread, as before (the same values bit for bit; tests compare the two).
  bool fill_in_loader = true;

  // Texture terms. Unset (nullopt / empty / 0): the checkpoint's value when resuming, else the default in ().
  // Adversarial training: a PatchGAN discriminator (models/patch_discriminator.h) scores the
  // composite against the truth; the generator adds w·L_adv and w·L_fm (losses/adversarial.h).
  std::optional<double> adversarial;       // weight of the generator's adversarial loss (0: no discriminator)
  std::optional<double> feature_matching;  // weight of discriminator feature matching (0)
  std::string gan_loss;                    // "hinge" or "nonsaturating" (hinge)
  // The first d_warmup steps of the run (counted from step 0, so a resume past them trains as
  // usual) train the discriminator alone: the generator's adversarial and feature-matching
  // terms are left out, so it does not chase a discriminator that cannot yet tell anything.
  std::optional<int64_t> d_warmup;         // (0)
  // What the discriminator is asked: "composite" (it sees the image and its mask; every patch of
  // the composite is made up) or "hole" (it sees the image alone and must find the hole: the
  // composite's patches over the hole are fake, those over known pixels real, as LaMa trains;
  // the generator is pushed to hide the hole's edges as much as to fill it). ("composite")
  std::string d_target;
  double d_lr = 0;                         // the discriminator's Adam lr (4× the generator's lr)
  int64_t d_width = 0, d_layers = 0;       // discriminator width (32) and strided layers (3)
  // The feature extractor of the perceptual and style terms: "" for --vgg's, or
  // "random:SEED[:SCALE]", a VGG-16 trunk at SCALE of its width (0.25) with fixed random weights.
  std::string style_features;
  std::optional<double> style_weight;      // (120, the paper's)
  std::optional<double> perceptual_weight; // (0.05, the paper's; 0 with random features)
  // The pixel terms (the paper's 1, 6, 0.1): a lower hole weight lets texture terms pull
  // harder against the blur an ℓ1 in the hole prefers.
  std::optional<double> valid_weight, hole_weight, tv_weight;
  // The hole's ℓ1 on K×K block means (losses/inpainting_loss.h, LossWeights::hole_block);
  // 1: per pixel. (1; the checkpoint's)
  std::optional<int64_t> hole_block;
  // Decay of an exponential moving average of the generator's weights (layers/weight_average.h),
  // in [0, 1); 0: none. With it, validation, samples and the checkpoint's model are the
  // average (what inpaint-run and inpaint-export read), the live weights ride along as
  // training state ("train.live.*") for --resume. (0; the checkpoint's)
  std::optional<double> ema;
};

// One step's losses, the unweighted terms as InpaintingLoss reports them.
struct StepLosses {
  int64_t step = 0;
  double total = 0, valid = 0, hole = 0, perceptual = 0, style_out = 0, style_comp = 0, tv = 0;
  // With a discriminator: the generator's adversarial and feature-matching terms (unweighted),
  // the discriminator's loss and its mean score of the truth and of the composite.
  double adv = 0, fm = 0, d_loss = 0, d_real = 0, d_fake = 0;
};

struct ValidationResult {
  int64_t step = 0;
  double loss = 0, psnr = 0, ssim = 0, l1_percent = 0;  // means over the validation set
  double hole_detail = 0;  // median over the validation set (core/metrics/metrics.h)
};

// Thrown when a loss term is NaN or Inf: nothing of the broken state was saved. The losses
// and parameters are the same on every rank, so every rank throws it at the same step.
struct DivergenceError : CollectiveError {
  DivergenceError(const std::string& message, int rank) : CollectiveError(message, rank) {}
};

class Trainer {
 public:
  // Checks the options, reads the data folders, builds (and loads) the model, VGG and Adam.
  // Throws a one-line Error for anything wrong (missing data, bad checkpoint, unwritable out);
  // with several ranks, a CollectiveError on every rank when any rank fails, or when the
  // ranks do not start from the same state (checkpoint, data, options).
  explicit Trainer(TrainOptions options, Communicator& ranks = single_process());
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains until options.steps, until *stop becomes true or until options.time_limit seconds
  // have passed (both checked between steps; with several ranks, on any rank stops all of
  // them at the same step), then saves a checkpoint and returns the step reached.
  // Validates/samples/saves on the way.
  int64_t run(const std::atomic<bool>* stop = nullptr);

  // One optimisation step on the next batch; throws DivergenceError on a non-finite loss.
  StepLosses train_step();
  ValidationResult validate();          // eval mode, no graph; appends to val.csv (rank 0)
  // Returns the path; prunes to the last `keep`. With several ranks, first checks that they
  // still hold the same weights (a CollectiveError if not); only rank 0 writes.
  std::string save_checkpoint();
  void write_samples();                 // samples/step-N.png (rank 0)
  void write_loss_plot();               // loss.png (rank 0)

  int64_t step() const { return step_; }
  PConvUNet& model() { return *model_; }
  Adam& optimizer() { return *adam_; }
  const WeightAverage* average() const { return ema_.get(); }  // null without --ema
  PatchDiscriminator* discriminator() { return disc_.get(); }  // null without --adversarial
  Adam* discriminator_optimizer() { return d_adam_.get(); }
  TrainingData& data() { return *data_; }
  const TrainOptions& options() const { return opt_; }  // resolved (no zeros left)
  const InpaintingLoss& loss() const { return *loss_; }
  const std::vector<StepLosses>& history() const { return history_; }
  const std::string& last_checkpoint() const { return last_checkpoint_; }
  // Every warning of this run so far (also on stderr unless options.quiet), without the
  // "inpaint-train: warning: " prefix.
  const std::vector<std::string>& warnings() const { return warnings_; }
  Communicator& ranks() { return comm_; }
  // Called after the optimiser update of each step, before any checkpoint (tests inject
  // faults here).
  std::function<void(Trainer&)> after_step;

 private:
  // setup() and its steps, in the order it calls them (trainer_setup.cpp).
  struct StartingPoint;
  void setup();
  void check_required_options();
  StartingPoint read_starting_checkpoint();
  void take_back_resumed_state(StartingPoint& start);
  void match_checkpoint_model(StartingPoint& start);
  void resolve_defaults(const StartingPoint& start);
  void check_texture_options();
  void check_run_fits(const StartingPoint& start);
  void prepare_out_folder(bool resuming);
  SafetensorsFile build_model(const StartingPoint& start);
  SafetensorsFile load_init_into_other_model(const StartingPoint& start, const PConvUNetConfig& config,
                                             bool init_adds_noise);
  void setup_optimizer(const StartingPoint& start, const SafetensorsFile& file);
  void setup_average(const StartingPoint& start, const SafetensorsFile& file);
  void setup_discriminator(const std::map<std::string, std::string>& saved,
                           const std::map<std::string, Tensor>& tensors, const std::string& checkpoint, bool resuming);
  bool init_discriminator_fits(const std::map<std::string, std::string>& saved, const std::string& checkpoint);
  PatchDiscriminatorConfig discriminator_config(const std::map<std::string, std::string>* saved,
                                                const std::string& checkpoint);
  void load_vgg();
  void setup_data(const StartingPoint& start);
  void load_validation_set();
  void restore_logs();

  StepLosses step_losses(const LossTerms& t, const Tensor& total, const Tensor& adv, const Tensor& fm);
  void discriminator_step(const Tensor& real_scores, const Tensor& composite, const Tensor& mask, StepLosses& s);
  void warn_if_discriminator_wins();
  void append_log(const StepLosses& s);
  // The lines run() prints (trainer_report.cpp).
  std::string run_banner() const;
  std::string progress_line(const StepLosses& s, double eta_seconds) const;
  std::string validation_line(const ValidationResult& v) const;
  void check_parameters_finite() const;
  DivergenceError divergence(const std::string& what) const;  // names the last good checkpoint
  bool writes() const { return comm_.rank() == 0; }  // rank 0 writes every file
  void average_gradients(Module& module);  // of the generator or the discriminator, over the ranks
  // A CollectiveError on every rank unless all ranks hold rank 0's state; `when` and `advice`
  // go into the message.
  void check_ranks_agree(const std::string& when, const std::string& advice);
  // The train.options metadata of a checkpoint (JSON): every option it saves.
  std::string saved_options() const;
  // Removes the checkpoints before the last `keep`; one that cannot be removed is a warning.
  void prune_checkpoints();
  void warn(const std::string& message);

  TrainOptions opt_;
  Communicator& comm_;
  std::unique_ptr<PConvUNet> model_;
  std::shared_ptr<VGG16Features> vgg_;
  std::unique_ptr<InpaintingLoss> loss_;
  std::unique_ptr<Adam> adam_;
  std::unique_ptr<WeightAverage> ema_;
  std::unique_ptr<PatchDiscriminator> disc_;
  std::unique_ptr<Adam> d_adam_;
  GanLoss gan_ = GanLoss::Hinge;
  int64_t last_win_warning_ = -1;  // step of the last "discriminator wins" warning
  std::unique_ptr<TrainingData> data_;
  std::vector<ValidationSample> val_;
  std::vector<StepLosses> history_;
  std::vector<ValidationResult> val_history_;
  int64_t step_ = 0;
  std::string last_checkpoint_;
  std::vector<std::string> warnings_;
  std::set<std::string> unremovable_;  // old checkpoints already warned about
  int64_t saved_step_ = -1;  // step of the last checkpoint this object wrote
  double images_per_second_ = 0;
  // CPU seconds (all threads) of the steps since the last progress line, and of their
  // discriminator passes (its forwards and its update; the generator's backward through it is
  // counted with the generator): what the discriminator costs, whatever else the machine runs.
  double window_cpu_ = 0, window_disc_cpu_ = 0;
};

// "--vgg is required: ..." — what to do without VGG weights (used by the app and its test).
std::string vgg_missing_message();

}  // namespace pconv
