// The training loop (apps/training/trainer.h): a step of the generator and of its
// discriminator, checkpoints, and run() around them. Set-up is in trainer_setup.cpp, what a run
// reports in trainer_report.cpp, the ranks' checks in trainer_ranks.cpp.
#include "apps/training/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <optional>

#include "apps/cli/cli.h"
#include "apps/training/checkpoint_metadata.h"
#include "apps/training/net_batch.h"
#include "apps/training/progress_text.h"
#include "apps/training/run_folder.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "losses/adversarial.h"

namespace pconv {


using namespace training;
namespace fs = std::filesystem;

namespace {

double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

}  // namespace

// "<what>; stopped without saving (last good checkpoint: …)", on every rank alike.
DivergenceError Trainer::divergence(const std::string& what) const {
  return DivergenceError(what + "; stopped without saving" +
                             (last_checkpoint_.empty() ? std::string(" (no checkpoint yet)")
                                                       : " (last good checkpoint: " + last_checkpoint_ + ")"),
                         comm_.rank());
}

StepLosses Trainer::train_step() {
  const Batch batch = data_->next();
  const double cpu_start = cpu_seconds();
  double disc_cpu = 0;
  const NetBatch b = to_network(batch.images, batch.masks, opt_.device, batch.fill);
  if (disc_) disc_->power_iterate();  // once per step: every pass of this step uses the same σ
  // Fresh noise every step and rank, the same on a resume; validation and samples draw with
  // seed 0, as inference does.
  model_->set_noise_seed(mix_seed(*opt_.seed, uint64_t(step_), uint64_t(comm_.rank()) + 1));
  const Tensor out = model_->forward(b.input, b.mask, b.fill);
  model_->set_noise_seed(0);
  const LossTerms t = loss_->compute(out, b.gt, b.mask);
  Tensor total = t.total, adv = Tensor::zeros({}, out.dtype(), out.device()), fm = adv, comp;
  DiscriminatorOutput real;
  if (disc_) {
    // The truth's scores with a graph into the discriminator only: its step below reuses them
    // (its weights do not change before then). The composite's with a graph into the
    // generator only: the discriminator is frozen for that pass.
    const double d_start = cpu_seconds();
    real = disc_->forward(b.gt, b.mask);
    comp = composite(out, b.gt, b.mask);
    disc_->freeze(true);
    const DiscriminatorOutput fake = disc_->forward(comp, b.mask);
    disc_->freeze(false);
    disc_cpu += cpu_seconds() - d_start;
    adv = generator_adversarial_loss(fake.scores, gan_);
    fm = feature_matching_loss(fake.features, real.features);
    // During the discriminator's warm-up the generator leaves these terms out (logged all the same).
    if (step_ >= opt_.d_warmup.value_or(0)) total = total + adv * *opt_.adversarial + fm * *opt_.feature_matching;
  }

  StepLosses s = step_losses(t, total, adv, fm);
  adam_->zero_grad();
  total.backward();
  average_gradients(*model_);
  adam_->step();
  if (ema_) ema_->update();
  if (disc_) {
    const double d_start = cpu_seconds();
    discriminator_step(real.scores, comp.detach(), b.mask, s);
    disc_cpu += cpu_seconds() - d_start;
  }
  window_cpu_ += cpu_seconds() - cpu_start, window_disc_cpu_ += disc_cpu;
  ++step_;
  history_.push_back(s);
  if (writes()) append_log(s);
  if (after_step) after_step(*this);
  return s;
}

// The step's terms as numbers, averaged over the ranks (each is a mean over equal shares: their
// mean is the whole batch's, and a NaN on one rank reaches all, so all stop together); throws
// DivergenceError naming the first term that is not finite.
StepLosses Trainer::step_losses(const LossTerms& t, const Tensor& total, const Tensor& adv, const Tensor& fm) {
  StepLosses s;
  s.step = step_ + 1;
  const std::pair<const char*, double*> terms[] = {
      {"valid", &s.valid}, {"hole", &s.hole}, {"perceptual", &s.perceptual}, {"style_out", &s.style_out},
      {"style_comp", &s.style_comp}, {"tv", &s.tv}, {"total", &s.total}, {"adversarial", &s.adv},
      {"feature-matching", &s.fm}};
  constexpr size_t kTerms = 9;
  const Tensor* tensors[kTerms] = {&t.valid, &t.hole, &t.perceptual, &t.style_out, &t.style_comp, &t.tv, &total,
                                   &adv, &fm};
  double values[kTerms];
  for (size_t i = 0; i < kTerms; ++i) values[i] = tensors[i]->item();
  if (comm_.size() > 1) {
    comm_.allreduce_sum(values, kTerms);
    for (double& v : values) v /= double(comm_.size());
  }
  for (size_t i = 0; i < kTerms; ++i) {
    *terms[i].second = values[i];
    if (!std::isfinite(values[i]))
      throw divergence("step " + std::to_string(s.step) + ": the " + terms[i].first + " loss is " +
                       format("%g", values[i]));
  }
  return s;
}

// The discriminator's update on the same batch: the truth against the composite the generator
// made before its update (detached: no gradient reaches the generator).
void Trainer::discriminator_step(const Tensor& real_scores, const Tensor& composite, const Tensor& mask,
                                 StepLosses& s) {
  const DiscriminatorOutput fake = disc_->forward(composite, mask);
  // With the hole target, the composite's mean score is taken over its hole patches alone (the
  // others are truth): the figure the "wins outright" check and gan.png compare with the truth's.
  const Tensor target =
      opt_.d_target == "hole" ? disc_->hole_fraction(mask, fake.scores.shape(), fake.scores.dtype()) : Tensor();
  const Tensor d_loss = discriminator_loss(real_scores, fake.scores, gan_, target);
  const double fake_mean = target.defined() ? sum(fake.scores * target).item() / std::max(sum(target).item(), 1e-12)
                                            : mean(fake.scores).item();
  double values[3] = {d_loss.item(), mean(real_scores).item(), fake_mean};
  if (comm_.size() > 1) {
    comm_.allreduce_sum(values, 3);
    for (double& v : values) v /= double(comm_.size());
  }
  s.d_loss = values[0], s.d_real = values[1], s.d_fake = values[2];
  if (!std::isfinite(s.d_loss))
    throw divergence("step " + std::to_string(s.step) + ": the discriminator's loss is " + format("%g", s.d_loss));
  d_adam_->zero_grad();
  d_loss.backward();
  average_gradients(*disc_);
  d_adam_->step();
}

// A discriminator that wins outright (its loss near 0: every truth patch scored real and every
// composite patch fake with margin) gives the generator little to learn from; say so, at most
// every 500 steps.
void Trainer::warn_if_discriminator_wins() {
  if (!disc_ || history_.size() < 50 || (last_win_warning_ >= 0 && step_ - last_win_warning_ < 500)) return;
  double loss = 0, real = 0, fake = 0;
  for (size_t i = history_.size() - 50; i < history_.size(); ++i)
    loss += history_[i].d_loss / 50, real += history_[i].d_real / 50, fake += history_[i].d_fake / 50;
  const double chance = gan_ == GanLoss::Hinge ? 2.0 : 2 * std::log(2.0);  // loss when D cannot tell
  if (loss > 0.05 * chance) return;
  last_win_warning_ = step_;
  warn("the discriminator wins outright (loss " + format("%.3g", loss) + ", mean score " + format("%.2f", real) +
       " for the truth, " + format("%.2f", fake) +
       " for the composite, over the last 50 steps): the composite's scores saturate and the "
       "generator learns little from them; lower --d-lr or raise --adversarial");
}

void Trainer::check_parameters_finite() const {
  for (const auto& [name, t] : model_->state_dict())
    for (float v : t.to_float_vector())
      if (!std::isfinite(v))
        throw divergence("step " + std::to_string(step_) + ": " + name + " became non-finite in the update");
}

std::string Trainer::saved_options() const {
  return saved_options_json(opt_);
}

std::string Trainer::save_checkpoint() {
  check_ranks_agree("step " + std::to_string(step_),
                    "their all-reductions gave them different values; stopped without saving" +
                        (last_checkpoint_.empty() ? std::string() : " (last good checkpoint: " + last_checkpoint_ + ")"));
  check_parameters_finite();
  const std::string path = (fs::path(opt_.out_dir) / "checkpoints" / step_file(step_, "safetensors")).string();
  if (!writes()) {
    last_checkpoint_ = path, saved_step_ = step_;  // rank 0 writes it
    return path;
  }
  std::map<std::string, std::string> m = {
      {kStepKey, std::to_string(step_)},
      {kPhaseKey, opt_.finetune ? "finetune" : "train"},
      {kLrKey, format("%.17g", adam_->lr())},
      {kDataStateKey, data_->state().to_string()},
      {kDataCountKey, std::to_string(data_->samples_per_epoch())},
      {kOptionsKey, saved_options()},
  };
  std::map<std::string, Tensor> extra = adam_->state_dict();
  if (disc_) {
    m[kDiscConfigKey] = disc_->config().to_json();
    m[kDiscLrKey] = format("%.17g", d_adam_->lr());
    for (const auto& [name, t] : disc_->state_dict()) extra[kDiscPrefix + name] = t;
    for (const auto& [name, t] : d_adam_->state_dict()) extra[kDiscOptimPrefix + name.substr(6)] = t;  // "optim."
  }
  // With --ema the file's model is the average (what inpaint-run reads); the live weights go beside it.
  std::optional<AveragedWeights> averaged;
  if (ema_) {
    m[kEmaUpdatesKey] = std::to_string(ema_->updates());
    averaged.emplace(*model_, *ema_);
    for (const auto& [name, t] : averaged->live()) extra[kLivePrefix + name] = t;
  }
  model_->save_checkpoint(path, m, extra);
  averaged.reset();
  last_checkpoint_ = path;
  saved_step_ = step_;
  prune_checkpoints();  // only after the new file is safely in place
  write_loss_plot();
  return path;
}

void Trainer::prune_checkpoints() {
  // Whatever holds an old checkpoint's name goes, so that something else there (a folder) is
  // reported rather than silently kept; a removal that fails leaves the disk filling up.
  const std::vector<std::string> all = checkpoint_entries(opt_.out_dir, false);
  for (size_t i = 0; i + size_t(opt_.keep) < all.size(); ++i) {
    std::error_code ec;
    if (fs::remove(all[i], ec) || !ec) continue;
    if (unremovable_.insert(all[i]).second)
      warn("cannot remove the old checkpoint " + all[i] + " (" + ec.message() + "); it stays and takes space");
  }
}

void Trainer::warn(const std::string& message) {
  warnings_.push_back(message);
  if (writes() && !opt_.quiet) cli::progress("inpaint-train: warning: " + message);
}

int64_t Trainer::run(const std::atomic<bool>* stop) {
  using clock = std::chrono::steady_clock;
  const bool talk = !opt_.quiet && writes();
  auto say = [&](const std::string& line) {
    if (talk) cli::progress(line);
  };
  say(run_banner());
  if (step_ == 0) {
    const ValidationResult v = validate();
    write_samples();
    if (!val_.empty()) say(validation_line(v));
  }
  auto window_start = clock::now();
  const auto run_start = window_start;
  auto out_of_time = [&] {
    return opt_.time_limit > 0 && std::chrono::duration<double>(clock::now() - run_start).count() >= opt_.time_limit;
  };
  int64_t window_steps = 0;
  bool timed_out = false;
  while (step_ < opt_.steps) {
    // [stop requested, out of time]; with several ranks, on any of them: a signal may reach
    // one rank only, or the ranks in different steps, and all must stop at the same step.
    double flags[2] = {stop && stop->load() ? 1.0 : 0.0, out_of_time() ? 1.0 : 0.0};
    comm_.allreduce_sum(flags, 2);
    if (flags[0] > 0) break;
    if ((timed_out = flags[1] > 0)) break;
    const StepLosses s = train_step();
    ++window_steps;
    if (step_ % opt_.log_every == 0 || step_ == opt_.steps) {
      const double seconds = std::chrono::duration<double>(clock::now() - window_start).count();
      images_per_second_ = seconds > 0 ? double(window_steps * opt_.batch) / seconds : 0;
      window_start = clock::now(), window_steps = 0;
      const double eta = double((opt_.steps - step_) * opt_.batch) / std::max(images_per_second_, 1e-9);
      say(progress_line(s, eta));
      window_cpu_ = window_disc_cpu_ = 0;
      warn_if_discriminator_wins();
    }
    if (step_ % opt_.val_every == 0) {
      const ValidationResult v = validate();
      if (!val_.empty()) say(validation_line(v));
    }
    if (step_ % opt_.sample_every == 0) write_samples();
    if (step_ % opt_.save_every == 0) say("saved " + save_checkpoint());
  }
  if (saved_step_ != step_) say("saved " + save_checkpoint());
  if (talk) {
    say("inpaint-train: model " + resolve_checkpoint(opt_.out_dir) + "; losses " + opt_.out_dir + "/log.csv and " +
        opt_.out_dir + "/loss.png; samples in " + opt_.out_dir + "/samples/");
    if (const int64_t bad = data_->unreadable_count(); bad > 0)
      say("inpaint-train: skipped " + std::to_string(bad) + " unreadable photo(s) of " +
          std::to_string(data_->samples_per_epoch()) + " (named in the warnings above)");
  }
  if (step_ < opt_.steps)
    say("stopped at step " + std::to_string(step_) +
        (timed_out ? " after the time limit (" + format("%g", opt_.time_limit) + " s)" : std::string(" on request")) +
        "; resume with --resume " + opt_.out_dir);
  return step_;
}

}  // namespace pconv
