#pragma once
// Hole masks: a seeded generator of irregular holes (strokes, ellipses, blobs) whose hole
// ratios spread over 1–60 % (PAPER.md "Masks"), the paper's mask-set augmentation (random
// dilation, rotation, translation, cropping; nearest resampling only, re-binarised), and
// mask files on disk. Inside the framework 1 = known pixel, 0 = hole (DESIGN.md).
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/io/image.h"
#include "core/tensor.h"

namespace pconv {

// A binary H×W mask on the host, row-major, 1 = known, 0 = hole.
struct MaskImage {
  int64_t height = 0, width = 0;
  std::vector<float> known;

  MaskImage() = default;
  MaskImage(int64_t h, int64_t w, float value = 1.0f);
  float at(int64_t y, int64_t x) const { return known[size_t(y * width + x)]; }
  bool is_hole(int64_t y, int64_t x) const { return known[size_t(y * width + x)] < 0.5f; }
  void set_hole(int64_t y, int64_t x) { known[size_t(y * width + x)] = 0.0f; }
};

// Fraction of pixels that are holes (value < 0.5).
double hole_ratio(const MaskImage& mask);
// Same for a tensor of any shape (1 known, 0 hole).
double hole_ratio(const Tensor& mask);

// 1×1×H×W f32 tensor, and N×1×H×W from masks of one size.
Tensor mask_to_tensor(const MaskImage& mask);
Tensor masks_to_batch(const std::vector<MaskImage>& masks);
// From an H×W, 1×H×W or 1×1×H×W tensor; values are thresholded at 0.5.
MaskImage mask_from_tensor(const Tensor& t);

// ---- generator
struct MaskGeneratorOptions {
  double min_hole_ratio = 0.01;  // each mask's target ratio is uniform in [min, max]
  double max_hole_ratio = 0.60;
};

// Draws shapes until the hole ratio reaches `target_ratio` (in [0, 0.95]); each shape is sized
// from the remaining deficit, so the result overshoots the target by little.
MaskImage generate_mask(int64_t height, int64_t width, double target_ratio, std::mt19937_64& rng);

// The index-th mask of the set `seed`: counter-based, so any mask of a set is reproducible
// on its own, regardless of the order masks are drawn in. The target ratio is uniform in
// [min_hole_ratio, max_hole_ratio].
MaskImage generate_mask(int64_t height, int64_t width, uint64_t seed, uint64_t index,
                   const MaskGeneratorOptions& options = {});

// A mixing function (splitmix64) to derive independent streams from (seed, a, b).
uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b = 0);

// ---- augmentation of an existing mask set (PAPER.md: dilation, rotation, translation, crop)
struct MaskAugmentOptions {
  // Dilation radius of the holes, uniform in [0, max_dilation·min(H, W)] pixels (disk).
  // The paper dilates thin occlusion masks by 9–49 px at 512 (radius up to ~0.05·512).
  double max_dilation = 0.05;
  double max_rotation_degrees = 180.0;
  double max_translation = 0.25;  // fraction of the size, each axis
  // The crop keeps a random window of between min_crop and 1 of each side before the
  // nearest resize to the output size (a zoom in).
  double min_crop = 0.5;
};

// Augments `mask` and returns an out_height×out_width mask; nearest sampling only, and the
// result is binary. Pixels that come from outside the source are known.
MaskImage augment_mask(const MaskImage& mask, int64_t out_height, int64_t out_width, std::mt19937_64& rng,
                  const MaskAugmentOptions& options = {});

// Morphological dilation of the holes by a disk of `radius` pixels.
MaskImage dilate_holes(const MaskImage& mask, int64_t radius);
// Nearest-neighbour resize (pixel centres), the only resampling masks get.
MaskImage resize_nearest(const MaskImage& mask, int64_t out_height, int64_t out_width);

// ---- files. On disk a mask is an image; which colour marks holes is a convention.
enum class MaskHoles { White, Black };
MaskHoles parse_mask_holes(const std::string& s);  // "white" | "black", else throws
const char* mask_holes_name(MaskHoles h);

struct LoadedMask {
  MaskImage mask;
  bool had_grey_levels = false;  // some pixels were neither black nor white (thresholded at 50 %)
  bool read_by_alpha = false;    // the file has transparency: holes are where it is painted
  int channels_in_file = 0;
};
// A pixel is white when its mean RGB value is at least 128 (50 %). A mask with transparency
// (an alpha channel not entirely opaque: holes painted on a transparent layer) is read by its
// alpha instead, whatever `holes` says: alpha >= 128 (painted) is hole, the rest known.
LoadedMask load_mask(const std::string& path, MaskHoles holes = MaskHoles::White);
// The same from an image already decoded with ImageAlpha::Keep (an upload, a fuzzer's input).
LoadedMask mask_from_image(const ImageU8& img, MaskHoles holes = MaskHoles::White);
// What the tools print once when a mask was read by its alpha.
std::string alpha_mask_note(const std::string& path);
// PNG with holes white (the default on-disk convention), known pixels black.
void save_mask(const std::string& path, const MaskImage& mask, MaskHoles holes = MaskHoles::White);

}  // namespace pconv
