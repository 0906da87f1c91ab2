#include "losses/adversarial.h"

#include "core/ops.h"

namespace pconv {

GanLoss parse_gan_loss(const std::string& name) {
  if (name == "hinge") return GanLoss::Hinge;
  if (name == "nonsaturating") return GanLoss::NonSaturating;
  throw Error("GAN loss '" + name + "': expected hinge or nonsaturating");
}

std::string gan_loss_name(GanLoss loss) { return loss == GanLoss::Hinge ? "hinge" : "nonsaturating"; }

Tensor softplus(const Tensor& x) { return relu(x) + log(exp(-abs(x)) + 1.0); }

Tensor discriminator_loss(const Tensor& real_scores, const Tensor& fake_scores, GanLoss loss,
                          const Tensor& fake_target) {
  // The loss of scores that should read real, and of those that should read fake.
  const auto as_real = [loss](const Tensor& s) { return loss == GanLoss::Hinge ? relu(rsub(1.0, s)) : softplus(-s); };
  const auto as_fake = [loss](const Tensor& s) { return loss == GanLoss::Hinge ? relu(s + 1.0) : softplus(s); };
  if (!fake_target.defined()) return mean(as_real(real_scores)) + mean(as_fake(fake_scores));
  if (fake_target.shape() != fake_scores.shape())
    throw Error("discriminator_loss: fake target " + shape_str(fake_target.shape()) + " does not match the scores " +
                shape_str(fake_scores.shape()));
  const Tensor t = fake_target.detach();
  return mean(as_real(real_scores)) + mean(t * as_fake(fake_scores) + rsub(1.0, t) * as_real(fake_scores));
}

Tensor generator_adversarial_loss(const Tensor& fake_scores, GanLoss loss) {
  if (loss == GanLoss::Hinge) return -mean(fake_scores);
  return mean(softplus(-fake_scores));
}

Tensor feature_matching_loss(const std::vector<Tensor>& fake_features, const std::vector<Tensor>& real_features) {
  if (fake_features.empty() || fake_features.size() != real_features.size())
    throw Error("feature_matching_loss: " + std::to_string(fake_features.size()) + " fake and " +
                std::to_string(real_features.size()) + " real feature maps (needs the same number, at least one)");
  Tensor total;
  for (size_t i = 0; i < fake_features.size(); ++i) {
    if (fake_features[i].shape() != real_features[i].shape())
      throw Error("feature_matching_loss: layer " + std::to_string(i) + " is " +
                  shape_str(fake_features[i].shape()) + " for the fake and " +
                  shape_str(real_features[i].shape()) + " for the real image");
    const Tensor term = mean(abs(fake_features[i] - real_features[i].detach()));
    total = total.defined() ? total + term : term;
  }
  return total * (1.0 / double(fake_features.size()));
}

}  // namespace pconv
