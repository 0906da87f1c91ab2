#pragma once
// The paper's loss (PAPER.md "The loss"), built from differentiable ops:
//
//   L_total = w_valid·L_valid + w_hole·L_hole + w_perc·L_perc
//           + w_style·(L_style_out + L_style_comp) + w_tv·L_tv
//
// with I_comp = M ⊙ I_gt + (1 − M) ⊙ I_out, every L1 term size-averaged (mean over all
// elements), Gram matrices ΨᵀΨ/(C·H·W) per image, and TV on I_comp over the hole dilated by
// one pixel (P), divided by N·C·H·W. Images are N×3×H×W in ImageNet-normalised space, the
// space VGG expects; the mask is N×1×H×W or N×3×H×W with 1 = known, 0 = hole.
#include <memory>

#include "core/tensor.h"
#include "models/vgg16.h"

namespace pconv {

struct LossWeights {
  double valid = 1.0;
  double hole = 6.0;
  double perceptual = 0.05;
  double style = 120.0;  // applied to L_style_out + L_style_comp
  double tv = 0.1;
  // Side K of the blocks whose means L_hole compares (1: per pixel, the paper's). An ℓ1 per
  // pixel is least for the conditional median of the hole, a blur; on K×K block means it pins
  // the hole's colours and shapes and leaves detail finer than K pixels to the texture terms.
  int64_t hole_block = 1;
};

// Every term as a scalar tensor (shape {}); `total` carries the graph back to I_out.
struct LossTerms {
  Tensor total, valid, hole, perceptual, style_out, style_comp, tv;
};

class InpaintingLoss {
 public:
  // vgg == nullptr: pixel and TV terms only; perceptual and style are reported as 0
  // (training with `--vgg none`).
  explicit InpaintingLoss(std::shared_ptr<const VGG16Features> vgg, LossWeights weights = {});

  // The gradient reaches `out` only: `gt` is detached, and the mask never carries one.
  LossTerms compute(const Tensor& out, const Tensor& gt, const Tensor& mask) const;

  const LossWeights& weights() const { return weights_; }
  bool has_vgg() const { return vgg_ != nullptr; }

 private:
  std::shared_ptr<const VGG16Features> vgg_;
  LossWeights weights_;
};

// ---- the pieces, public for tests and for callers that want one term

// I_comp = M ⊙ I_gt + (1 − M) ⊙ I_out (mask broadcast over channels; no gradient to M).
Tensor composite(const Tensor& out, const Tensor& gt, const Tensor& mask);

// Per-image Gram matrices of features f (N×C×H×W): N×C×C, fᵀf / (C·H·W).
Tensor gram_matrix(const Tensor& features);

// P: the hole region (mask == 0) dilated by one pixel with a 3×3 window, as 0/1 with the
// mask's shape. No gradient.
Tensor tv_region(const Tensor& mask);

// Means of K×K blocks of x (N×C×H×W → N×C×⌊H/K⌋×⌊W/K⌋); a remainder row or column is left
// out. K = 1 returns x.
Tensor block_means(const Tensor& x, int64_t k);

// Σ |horizontal diffs| over pairs with both pixels in P + Σ |vertical diffs| likewise,
// divided by N·C·H·W of `image`. `region` is N×1×H×W or N×C×H×W.
Tensor total_variation_in_region(const Tensor& image, const Tensor& region);

}  // namespace pconv
