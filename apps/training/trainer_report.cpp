// What a training run reports (apps/training/trainer.h): the log rows, validation, sample
// grids, loss and game plots, and the lines on stderr.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "apps/cli/cli.h"
#include "apps/training/net_batch.h"
#include "apps/training/plot.h"
#include "apps/training/progress_text.h"
#include "apps/training/run_folder.h"
#include "apps/training/trainer.h"
#include "core/autograd.h"
#include "core/metrics/metrics.h"

namespace pconv {

using namespace training;
namespace fs = std::filesystem;

void Trainer::append_log(const StepLosses& s) {
  char buf[512];
  std::snprintf(buf, sizeof buf, "%lld,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g",
                static_cast<long long>(s.step), s.total, s.valid, s.hole, s.perceptual, s.style_out, s.style_comp, s.tv,
                adam_->lr(), s.adv, s.fm, s.d_loss, s.d_real, s.d_fake);
  append_line((fs::path(opt_.out_dir) / "log.csv").string(), buf);
}

ValidationResult Trainer::validate() {
  ValidationResult r;
  r.step = step_;
  if (!writes() || val_.empty()) return r;
  std::optional<AveragedWeights> averaged;  // what the checkpoint's model will be
  if (ema_) averaged.emplace(*model_, *ema_);
  model_->eval();
  NoGradGuard no_grad;
  const size_t chunk = size_t(opt_.batch);
  std::vector<double> details;
  for (size_t first = 0; first < val_.size(); first += chunk) {
    const size_t n = std::min(chunk, val_.size() - first);
    std::vector<Tensor> images;
    std::vector<MaskImage> masks;
    for (size_t i = first; i < first + n; ++i) {
      images.push_back(val_[i].image.reshape({1, 3, val_[i].image.size(1), val_[i].image.size(2)}));
      masks.push_back(val_[i].mask);
    }
    const NetBatch b = to_network(concat(images, 0), masks_to_batch(masks), opt_.device);
    const Tensor out = model_->forward(b.input, b.mask);
    r.loss += loss_->compute(out, b.gt, b.mask).total.item() * double(n);
    // Scored as users get it: clamped to [0,1] (saving clamps), known pixels composited.
    const Tensor result = clamp01(imagenet_denormalize(out)).to(Device::CPU);
    for (size_t i = 0; i < n; ++i) {
      const ValidationSample& v = val_[first + i];
      const Tensor one = slice(result, 0, int64_t(i), int64_t(i) + 1).reshape(v.image.shape());
      const ImageMetrics m = evaluate_image(v.name, one, v.image, v.mask);
      r.psnr += m.psnr, r.ssim += m.ssim, r.l1_percent += m.l1_percent;
      if (std::isfinite(m.hole_detail)) details.push_back(m.hole_detail);
    }
  }
  model_->train();
  const double count = double(val_.size());
  r.loss /= count, r.psnr /= count, r.ssim /= count, r.l1_percent /= count;
  // The median, as inpaint-eval reports hole detail (NaN when no pair has a hole to measure).
  std::sort(details.begin(), details.end());
  r.hole_detail = details.empty() ? std::nan("")
                  : details.size() % 2 ? details[details.size() / 2]
                                       : (details[details.size() / 2 - 1] + details[details.size() / 2]) / 2;
  char buf[200];
  std::snprintf(buf, sizeof buf, "%lld,%.9g,%.9g,%.9g,%.9g,%.9g", static_cast<long long>(r.step), r.loss, r.psnr,
                r.ssim, r.l1_percent, r.hole_detail);
  append_line((fs::path(opt_.out_dir) / "val.csv").string(), buf);
  val_history_.push_back(r);
  return r;
}

void Trainer::write_samples() {
  if (!writes() || val_.empty()) return;
  std::optional<AveragedWeights> averaged;
  if (ema_) averaged.emplace(*model_, *ema_);
  model_->eval();
  NoGradGuard no_grad;
  std::vector<SampleRow> rows;
  for (size_t i = 0; i < val_.size() && i < 4; ++i) {
    const ValidationSample& v = val_[i];
    const Shape nchw{1, 3, v.image.size(1), v.image.size(2)};
    const NetBatch b = to_network(v.image.reshape(nchw), mask_to_tensor(v.mask), opt_.device);
    SampleRow row;
    row.ground_truth = v.image;
    row.output = imagenet_denormalize(model_->forward(b.input, b.mask)).to(Device::CPU).reshape(v.image.shape());
    row.composite = composite(row.output, v.image, v.mask);
    row.mask = v.mask;
    rows.push_back(std::move(row));
  }
  model_->train();
  save_image((fs::path(opt_.out_dir) / "samples" / step_file(step_, "png")).string(), sample_grid(rows));
}

void Trainer::write_loss_plot() {
  if (!writes()) return;
  const char* names[] = {"total", "valid", "hole", "perceptual", "style_out", "style_comp", "tv", "fm", "d loss"};
  std::vector<Curve> curves;
  for (size_t k = 0; k < 9; ++k) {
    Curve c;
    c.name = names[k];
    c.color = curve_color(curves.size());
    for (const StepLosses& s : history_) {
      const double v[] = {s.total, s.valid, s.hole, s.perceptual, s.style_out, s.style_comp, s.tv, s.fm, s.d_loss};
      c.x.push_back(double(s.step)), c.y.push_back(v[k]);
    }
    // Without VGG the perceptual and style terms are 0 throughout: no line, no legend entry.
    if (std::any_of(c.y.begin(), c.y.end(), [](double y) { return y > 0; })) curves.push_back(std::move(c));
  }
  Curve val{"val loss", {}, {}, curve_color(8)};
  for (const ValidationResult& r : val_history_) val.x.push_back(double(r.step)), val.y.push_back(r.loss);
  if (!val.x.empty()) curves.push_back(std::move(val));
  PlotOptions o;
  o.smooth = 6;
  o.title = "inpaint-train: total (weighted) and unweighted loss terms, log scale, step " + std::to_string(step_);
  save_image((fs::path(opt_.out_dir) / "loss.png").string(), plot_curves(curves, o));
  if (!disc_) return;
  // The game itself on a linear scale (scores and the generator's hinge loss go negative).
  std::vector<Curve> game;
  const char* game_names[] = {"d loss", "score of truth", "score of composite", "adv"};
  for (size_t k = 0; k < 4; ++k) {
    Curve c;
    c.name = game_names[k];
    c.color = curve_color(k);
    for (const StepLosses& s : history_) {
      if (s.d_loss == 0 && s.d_real == 0 && s.d_fake == 0) continue;  // steps without a discriminator
      const double v[] = {s.d_loss, s.d_real, s.d_fake, s.adv};
      c.x.push_back(double(s.step)), c.y.push_back(v[k]);
    }
    game.push_back(std::move(c));
  }
  PlotOptions g;
  g.smooth = 6, g.log_y = false;
  g.title = "inpaint-train: discriminator loss and mean patch scores, step " + std::to_string(step_);
  save_image((fs::path(opt_.out_dir) / "gan.png").string(), plot_curves(game, g));
}

// The run's first line: the model, the data, the loss and from where to where.
std::string Trainer::run_banner() const {
  std::string line = "inpaint-train: " + model_->config().describe() + " (" +
                     std::to_string(model_->parameter_count()) + " parameters), " +
                     std::to_string(data_->samples_per_epoch()) + " photos, " + std::to_string(opt_.size) + "×" +
                     std::to_string(opt_.size) + " crops, batch " + std::to_string(opt_.batch);
  if (comm_.size() > 1)
    line += " over " + comm_.describe() + " (" + std::to_string(opt_.batch / comm_.size()) +
            " each, synchronised BatchNorm)";
  line += ", lr " + format("%g", opt_.lr) + (opt_.finetune ? ", fine-tune phase" : "");
  if (!opt_.style_features.empty()) line += ", style on random features (" + opt_.style_features + ")";
  else if (!vgg_) line += ", no VGG (pixel and TV terms only)";
  if (disc_) {
    line += ", " + disc_->config().describe() + (opt_.d_target == "hole" ? " finding the hole" : "") + ", " +
            opt_.gan_loss + " loss ×" + format("%g", *opt_.adversarial) + ", feature matching ×" +
            format("%g", *opt_.feature_matching) + ", d-lr " + format("%g", opt_.d_lr);
    if (opt_.d_warmup.value_or(0) > step_)
      line += ", the discriminator alone until step " + std::to_string(*opt_.d_warmup);
  }
  if (ema_) line += ", weights averaged (EMA " + format("%g", ema_->decay()) + ")";
  return line + ", from step " + std::to_string(step_) + " to " + std::to_string(opt_.steps);
}

// "step N/M  total …  img/s  ETA …": the terms of step `s`, the discriminator's share of the
// CPU since the last line, the speed.
std::string Trainer::progress_line(const StepLosses& s, double eta_seconds) const {
  std::string line = "step " + std::to_string(step_) + "/" + std::to_string(opt_.steps) + "  total " +
                     format("%.4f", s.total) + "  valid " + format("%.4f", s.valid) + "  hole " +
                     format("%.4f", s.hole);
  if (vgg_)
    line += "  perc " + format("%.4f", s.perceptual) + "  style " + format("%.4g", s.style_out) + "/" +
            format("%.4g", s.style_comp);
  line += "  tv " + format("%.4f", s.tv);
  if (disc_)
    line += "  adv " + format("%.4f", s.adv) + "  fm " + format("%.4f", s.fm) + "  D " + format("%.3f", s.d_loss) +
            " (real " + format("%+.2f", s.d_real) + ", fake " + format("%+.2f", s.d_fake) + ")";
  if (disc_ && window_cpu_ > 0) line += "  disc " + format("%.0f", 100 * window_disc_cpu_ / window_cpu_) + "% CPU";
  return line + "  " + format("%.1f", images_per_second_) + " img/s  ETA " + duration(eta_seconds);
}

std::string Trainer::validation_line(const ValidationResult& v) const {
  return "step " + std::to_string(v.step) + ": val loss " + format("%.4g", v.loss) + "  PSNR " +
         format("%.2f", v.psnr) + "  SSIM " + format("%.3f", v.ssim) + "  l1 " + format("%.2f", v.l1_percent) +
         "%  hole detail " + format("%.2f", v.hole_detail);
}

}  // namespace pconv
