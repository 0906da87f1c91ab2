#pragma once
// Adversarial losses for a patch discriminator's score maps, and discriminator feature matching.
// Every loss is the mean over all scores (or feature elements) of the batch.
//
//   hinge (SN-PatchGAN, SAGAN):  L_D = mean relu(1 − D(real)) + mean relu(1 + D(fake))
//                                L_G = −mean D(fake)
//   non-saturating (Goodfellow): L_D = mean softplus(−D(real)) + mean softplus(D(fake))
//                                L_G = mean softplus(−D(fake))
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

Tensor discriminator_loss(const Tensor& real_scores, const Tensor& fake_scores, GanLoss loss);
Tensor generator_adversarial_loss(const Tensor& fake_scores, GanLoss loss);
Tensor feature_matching_loss(const std::vector<Tensor>& fake_features, const std::vector<Tensor>& real_features);

}  // namespace pconv
