#pragma once
// Evaluation as in the paper (PAPER.md "Evaluation"): ℓ1 error (%), PSNR and SSIM on the
// whole composited image, grouped by hole-to-image area ratio in the buckets
// (0.01,0.1], (0.1,0.2], … (0.5,0.6].
#include <array>
#include <limits>
#include <string>
#include <vector>

#include "core/data/masks.h"
#include "core/tensor.h"

namespace pconv {

// Images are C×H×W tensors (any float dtype, CPU or GPU) with values in [0,1], same shape.
double l1_percent(const Tensor& a, const Tensor& b);  // mean |a − b| · 100
double psnr(const Tensor& a, const Tensor& b);        // dB with peak 1; +inf when a == b
// Wang et al. 2004 as skimage.metrics.structural_similarity(gaussian_weights=True,
// sigma=1.5, use_sample_covariance=False, data_range=1): an 11×11 Gaussian window (σ 1.5),
// K1 0.01, K2 0.03, averaged over the pixels whose window lies inside the image, then over
// channels. H and W must be at least 11.
double ssim(const Tensor& a, const Tensor& b);

// I_comp = M ⊙ gt + (1 − M) ⊙ result, with M = 1 on known pixels (3×H×W and H×W mask).
Tensor composite(const Tensor& result, const Tensor& gt, const MaskImage& mask);

// Hole detail: how much of the truth's fine structure the fill has inside the hole.
//   Y = 0.299 R + 0.587 G + 0.114 B of each image (values in [0,1] as stored, no linearisation;
//       a 1×H×W image is taken as Y itself);
//   |∇Y| = sqrt(gx² + gy²) with the 3×3 Sobel kernels (unnormalised: the scale cancels below);
//   region = the hole (mask 0) eroded by 2 px: the pixels whose every neighbour within Chebyshev
//       distance 2 (their 5×5 window) is a hole; pixels whose 5×5 window leaves the image are
//       excluded, so the Sobel window never needs a border rule (it would be replicate);
//   hole_detail = mean |∇Y(result)| over the region ÷ mean |∇Y(truth)| over the region.
// 1 = as much detail as the truth, < 1 a smoother fill (blur), > 1 a busier one (noise). NaN
// when the region is empty (no hole 5×5 px or larger) or the truth is flat there (mean 0).
// The region and the Sobel windows of its pixels lie inside the hole, so the result and its
// composite with the truth score the same. Float math, one pass over the image, on the CPU.
double hole_detail(const Tensor& result01, const Tensor& truth01, const MaskImage& mask);

struct ImageMetrics {
  std::string name;
  double hole_ratio = 0, l1_percent = 0, psnr = 0, ssim = 0;
  // NaN when not measurable (see hole_detail) or not measured; tables skip NaNs.
  double hole_detail = std::numeric_limits<double>::quiet_NaN();
};

// Metrics of one (result, gt, mask) triple: the result is composited with the ground truth
// through the mask first, so known pixels count as exact (the paper's whole-image numbers).
// Throws when the shapes disagree.
ImageMetrics evaluate_image(const std::string& name, const Tensor& result, const Tensor& gt,
                            const MaskImage& mask);

// ---- evaluation of files: results, ground truths and masks paired by file stem
struct EvalFiles {
  std::string name, result, gt, mask;
};
// Every image in `results_dir` (recursively) with the ground truth and mask of the same stem.
// Throws naming the missing or ambiguous (same stem twice in a folder) files.
std::vector<EvalFiles> match_eval_files(const std::string& results_dir, const std::string& gt_dir,
                                        const std::string& masks_dir);
// Loads the three files and evaluates them; throws when their sizes differ. Sets
// `mask_had_grey` when the mask file held grey levels (thresholded at 50 %), `mask_by_alpha`
// when it had transparency and was read by its alpha (core/data/masks.h).
ImageMetrics evaluate_files(const EvalFiles& files, MaskHoles holes, bool* mask_had_grey = nullptr,
                            bool* mask_by_alpha = nullptr);

// ---- hole-ratio buckets
constexpr int kNumBuckets = 6;
// 0 for (0.01,0.1], 1 for (0.1,0.2], … 5 for (0.5,0.6]; −1 outside (0.01, 0.6].
int hole_ratio_bucket(double ratio);
std::string bucket_label(int bucket);  // "(0.01,0.1]"
// Counts per bucket (and outside them) as text lines "(0.1,0.2]   12  ############".
std::string hole_ratio_histogram(const std::vector<double>& ratios);

struct MetricsSummary {
  int64_t count = 0;
  double l1_percent = 0, psnr = 0, ssim = 0;  // means
  // Median over the images whose hole detail is a number (of an even count, the mean of the
  // two middle values); NaN when none is. The median because the ratio is heavy-tailed: a
  // nearly flat truth (sky) makes a small denominator.
  double hole_detail = std::numeric_limits<double>::quiet_NaN();
  int64_t hole_detail_skipped = 0;  // images whose hole detail was NaN
};

// Accumulates per-image metrics by bucket, plus everything together ("all", which also
// counts images outside every bucket).
class MetricsTable {
 public:
  void add(const ImageMetrics& m);
  MetricsSummary bucket(int b) const;
  MetricsSummary all() const;
  int64_t outside_buckets() const { return outside_; }
  const std::vector<ImageMetrics>& images() const { return images_; }

  // | hole ratio | images | PSNR | SSIM | ℓ1 (%) | hole detail | — one row per non-empty
  // bucket, then "all"; a hole detail of no image shows as "n/a".
  std::string markdown() const;
  // bucket,count,psnr,ssim,l1_percent,hole_detail,hole_detail_skipped — every bucket (empty
  // ones with count 0), then "all". NaN is written "nan".
  std::string csv() const;
  // name,hole_ratio,bucket,psnr,ssim,l1_percent,hole_detail — one row per image.
  std::string per_image_csv() const;

 private:
  struct Sum {
    int64_t n = 0;
    double l1 = 0, psnr = 0, ssim = 0;
    std::vector<double> details;  // the hole details that are numbers, for the median
    int64_t details_skipped = 0;
  };
  static MetricsSummary summary(const Sum& s);
  std::array<Sum, kNumBuckets> buckets_{};
  Sum all_{};
  int64_t outside_ = 0;
  std::vector<ImageMetrics> images_;
};

}  // namespace pconv
