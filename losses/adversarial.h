#pragma once
// Adversarial losses for a patch discriminator's score maps, and discriminator feature matching.
// Every loss is the mean over all scores (or feature elements) of the batch.
//
//   hinge (SN-PatchGAN, SAGAN):  L_D = mean relu(1 − D(real)) + mean relu(1 + D(fake))
//                                L_G = −mean D(fake)
//   non-saturating (Goodfellow): L_D = mean softplus(−D(real)) + mean softplus(D(fake))
//                                L_G = mean softplus(−D(fake))
//   with a fake target t (per score, 1 fake, 0 real; LaMa's mask-as-fake-target for a
//   discriminator that must find the hole): the fake term is mean t·f(D(fake)) + (1−t)·r(D(fake)),
//   f and r being the fake and real terms above.
//   feature matching (pix2pixHD, LaMa): mean over layers of mean |F_l(fake) − F_l(real)|,
//                                with the real features held constant.
#include <string>
#include <vector>

#include "core/tensor.h"

namespace pconv {

enum class GanLoss { Hinge, NonSaturating };
GanLoss parse_gan_loss(const std::string& name);  // "hinge" or "nonsaturating"
std::string gan_loss_name(GanLoss loss);

// log(1 + eˣ), computed as relu(x) + log(1 + e^(−|x|)) so large |x| neither overflows nor
// loses the small term.
Tensor softplus(const Tensor& x);

// fake_target undefined: every fake score is a made-up patch.
Tensor discriminator_loss(const Tensor& real_scores, const Tensor& fake_scores, GanLoss loss,
                          const Tensor& fake_target = Tensor());
Tensor generator_adversarial_loss(const Tensor& fake_scores, GanLoss loss);
Tensor feature_matching_loss(const std::vector<Tensor>& fake_features, const std::vector<Tensor>& real_features);

}  // namespace pconv
