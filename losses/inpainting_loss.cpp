#include "losses/inpainting_loss.h"

#include <string>

#include "core/autograd.h"
#include "core/ops.h"

namespace pconv {

namespace {

Tensor scalar_zero(const Tensor& like) { return Tensor::zeros({}, like.dtype(), like.device()); }

Tensor mean_abs_diff(const Tensor& a, const Tensor& b) { return mean(abs(sub(a, b))); }

// Masks never carry a gradient; they may come in as f32 next to f64 images (tests).
Tensor prepared_mask(const Tensor& mask, const Tensor& image) {
  Tensor m = mask.detach();
  return m.dtype() == image.dtype() ? m : m.to(image.dtype());
}

void check_inputs(const Tensor& out, const Tensor& gt, const Tensor& mask) {
  check_defined("InpaintingLoss", "I_out", out);
  check_defined("InpaintingLoss", "I_gt", gt);
  check_defined("InpaintingLoss", "mask", mask);
  if (out.dim() != 4)
    throw Error("InpaintingLoss: I_out must be N×C×H×W, got " + shape_str(out.shape()));
  if (gt.shape() != out.shape())
    throw Error("InpaintingLoss: I_gt is " + shape_str(gt.shape()) + ", I_out is " +
                shape_str(out.shape()));
  const Shape& s = out.shape();
  if (mask.dim() != 4 || mask.size(0) != s[0] || (mask.size(1) != 1 && mask.size(1) != s[1]) ||
      mask.size(2) != s[2] || mask.size(3) != s[3])
    throw Error("InpaintingLoss: mask must be N×1×H×W or N×C×H×W for I_out " + shape_str(s) +
                ", got " + shape_str(mask.shape()));
  check_same_device("InpaintingLoss", out, "I_out", gt, "I_gt");
  check_same_device("InpaintingLoss", out, "I_out", mask, "mask");
  check_same_dtype("InpaintingLoss", out, "I_out", gt, "I_gt");
}

}  // namespace

Tensor composite(const Tensor& out, const Tensor& gt, const Tensor& mask) {
  Tensor m = prepared_mask(mask, out);
  return add(mul(m, gt), mul(rsub(1.0, m), out));
}

Tensor gram_matrix(const Tensor& features) {
  check_rank("gram_matrix", "features", features, 4);
  const int64_t n = features.size(0), c = features.size(1);
  const int64_t chw = c * features.size(2) * features.size(3);
  Tensor f = features.reshape({n, c, -1});  // N×C×HW
  return mul(matmul(f, f, false, true), 1.0 / double(chw));
}

Tensor tv_region(const Tensor& mask) {
  check_rank("tv_region", "mask", mask, 4);
  NoGradGuard no_grad;
  const Shape& s = mask.shape();
  // Dilation by a 3×3 window = "some hole pixel in the 3×3 neighbourhood": a box sum of the
  // hole indicator, thresholded. Each mask channel is dilated on its own.
  Tensor hole = rsub(1.0, mask.detach()).reshape({s[0] * s[1], 1, s[2], s[3]});
  Tensor box = Tensor::ones({1, 1, 3, 3}, mask.dtype(), mask.device());
  Tensor count = conv2d(hole, box, Tensor{}, 1, 1);
  return step(count, 0.5).reshape(s);
}

Tensor total_variation_in_region(const Tensor& image, const Tensor& region) {
  check_rank("total_variation_in_region", "image", image, 4);
  check_rank("total_variation_in_region", "region", region, 4);
  const int64_t h = image.size(2), w = image.size(3);
  if (region.size(0) != image.size(0) || region.size(2) != h || region.size(3) != w ||
      (region.size(1) != 1 && region.size(1) != image.size(1)))
    throw Error("total_variation_in_region: region " + shape_str(region.shape()) +
                " does not fit image " + shape_str(image.shape()));
  Tensor p = prepared_mask(region, image);
  Tensor total = scalar_zero(image);
  if (w > 1) {  // pairs (i,j),(i,j+1), counted when both are in P
    Tensor d = sub(slice(image, 3, 1, w), slice(image, 3, 0, w - 1));
    Tensor both = mul(slice(p, 3, 1, w), slice(p, 3, 0, w - 1));
    total = add(total, sum(mul(abs(d), both)));
  }
  if (h > 1) {  // pairs (i,j),(i+1,j)
    Tensor d = sub(slice(image, 2, 1, h), slice(image, 2, 0, h - 1));
    Tensor both = mul(slice(p, 2, 1, h), slice(p, 2, 0, h - 1));
    total = add(total, sum(mul(abs(d), both)));
  }
  return mul(total, 1.0 / double(image.numel()));  // PAPER.md: divided by N·C·H·W
}

Tensor block_means(const Tensor& x, int64_t k) {
  check_rank("block_means", "x", x, 4);
  if (k < 1) throw Error("block_means: the block side must be at least 1, got " + std::to_string(k));
  if (k == 1) return x;
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2) / k, w = x.size(3) / k;
  if (h == 0 || w == 0)
    throw Error("block_means: " + std::to_string(k) + "×" + std::to_string(k) + " blocks do not fit " +
                shape_str(x.shape()));
  Tensor t = x;  // slices copy: only when a remainder must go
  if (t.size(2) != h * k) t = slice(t, 2, 0, h * k);
  if (t.size(3) != w * k) t = slice(t, 3, 0, w * k);
  return mean(t.reshape({n, c, h, k, w, k}), {3, 5});
}

InpaintingLoss::InpaintingLoss(std::shared_ptr<const VGG16Features> vgg, LossWeights weights)
    : vgg_(std::move(vgg)), weights_(weights) {}

LossTerms InpaintingLoss::compute(const Tensor& out, const Tensor& gt_in, const Tensor& mask) const {
  check_inputs(out, gt_in, mask);
  const Tensor m = prepared_mask(mask, out);
  // The ground truth is a target, never trained: no gradient flows into it (tested).
  const Tensor gt = gt_in.detach();
  LossTerms t;

  // Pixel terms: size-averaged over N·C·H·W, the mask broadcast over channels.
  Tensor diff = sub(out, gt);
  t.valid = mean(abs(mul(m, diff)));
  t.hole = mean(abs(block_means(mul(rsub(1.0, m), diff), weights_.hole_block)));

  Tensor comp = composite(out, gt, m);
  t.tv = total_variation_in_region(comp, tv_region(m));

  if (vgg_) {
    // I_out and I_comp go through VGG as one 2N batch; I_gt's features need no graph.
    const int64_t n = out.size(0);
    std::vector<Tensor> feats = vgg_->forward(concat({out, comp}, 0));
    std::vector<Tensor> gt_feats, gt_grams;
    {
      NoGradGuard no_grad;
      gt_feats = vgg_->forward(gt);
      for (const Tensor& f : gt_feats) gt_grams.push_back(gram_matrix(f));
    }
    t.perceptual = scalar_zero(out);
    t.style_out = scalar_zero(out);
    t.style_comp = scalar_zero(out);
    for (size_t p = 0; p < feats.size(); ++p) {
      Tensor f_out = slice(feats[p], 0, 0, n), f_comp = slice(feats[p], 0, n, 2 * n);
      t.perceptual = add(t.perceptual, add(mean_abs_diff(f_out, gt_feats[p]),
                                           mean_abs_diff(f_comp, gt_feats[p])));
      Tensor grams = gram_matrix(feats[p]);  // 2N×C×C
      t.style_out = add(t.style_out, mean_abs_diff(slice(grams, 0, 0, n), gt_grams[p]));
      t.style_comp = add(t.style_comp, mean_abs_diff(slice(grams, 0, n, 2 * n), gt_grams[p]));
    }
  } else {
    t.perceptual = scalar_zero(out);
    t.style_out = scalar_zero(out);
    t.style_comp = scalar_zero(out);
  }

  const LossWeights& w = weights_;
  t.total = add(add(mul(t.valid, w.valid), mul(t.hole, w.hole)), mul(t.tv, w.tv));
  if (vgg_)
    t.total = add(add(t.total, mul(t.perceptual, w.perceptual)),
                  mul(add(t.style_out, t.style_comp), w.style));
  return t;
}

}  // namespace pconv
