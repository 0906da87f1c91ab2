#pragma once
// PatchGAN discriminator (Isola et al. 2017, as pix2pix's NLayerDiscriminator), spectrally
// normalised as SN-PatchGAN (DeepFill v2) is: it scores every overlapping patch of an image
// as real or made up, so the generator is pushed towards texture a pixel loss averages away.
//
//   input   N×(3+1)×H×W: the RGB image (ImageNet space, as the UNet's) and its mask (1 known);
//           or N×3×H×W, the image alone (in_channels 3), for a discriminator that must find
//           the hole itself (hole_fraction: its per-score targets)
//   d1..dL  SN conv 4×4 stride 2 pad 1, width·min(2^(n-1), 8) channels, LeakyReLU(0.2)
//   dL+1    SN conv 4×4 stride 1 pad 1, width·min(2^L, 8) channels, LeakyReLU(0.2)
//   score   SN conv 4×4 stride 1 pad 1 → 1 channel: a map of patch scores (no activation)
// The features after each LeakyReLU feed the feature-matching loss (losses/adversarial.h).
// Checkpoint names: d{n}.{weight,bias,weight_u,weight_v}, score.{…}.
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "layers/module.h"
#include "layers/spectral_norm.h"

namespace pconv {

// Where a discriminator lives in a generator's training checkpoint (inpaint-train writes it,
// inpaint-export --with-discriminator copies it): its tensors under this prefix, its config
// (PatchDiscriminatorConfig::to_json) under this metadata key.
inline constexpr const char* kDiscPrefix = "train.disc.";
inline constexpr const char* kDiscConfigKey = "train.disc.config";

struct PatchDiscriminatorConfig {
  int64_t in_channels = 4;  // RGB + mask; 3: RGB alone
  int64_t width = 32;       // channels of d1
  int64_t layers = 3;       // strided layers: each patch score sees 70×70 pixels at 3

  static constexpr int64_t kMaxWidth = 1024, kMaxLayers = 8;
  void validate() const;  // throws a one-line Error naming the field
  int64_t channels(int64_t n) const;  // output channels of d{n}, n = 1..layers+1
  int64_t receptive_field() const;    // pixels each score sees along one side
  std::string to_json() const;        // {"in_channels":4,"layers":3,"width":32}
  static PatchDiscriminatorConfig from_json(const std::string& text);
  std::string describe() const;       // "PatchGAN discriminator, 3 strided layers, width 32, 70×70 patches"
  bool operator==(const PatchDiscriminatorConfig&) const = default;
};

struct DiscriminatorOutput {
  Tensor scores;                  // N×1×h×w patch scores
  std::vector<Tensor> features;   // after each LeakyReLU, d1 … d(L+1)
};

class PatchDiscriminator : public Module {
 public:
  PatchDiscriminator(const PatchDiscriminatorConfig& config, uint64_t seed, DType dtype = DType::F32,
                     Device device = Device::CPU);

  // image N×3×H×W, mask N×1×H×W (1 known); H and W at least 2^layers · 4. The mask is an input
  // channel only when in_channels is 4.
  DiscriminatorOutput forward(const Tensor& image, const Tensor& mask) const;
  // For a score map of `scores_shape` (N×1×h×w) computed on images of the mask's size: under
  // every score, the fraction of hole pixels (mask 0) in the 2^layers-pixel square at the centre
  // of its receptive field, in the scores' dtype and on the mask's device (no graph). These are
  // the targets of a discriminator that must tell where a composite was made up (LaMa's
  // mask-as-fake-target): 1 fake, 0 real.
  Tensor hole_fraction(const Tensor& mask, const Shape& scores_shape, DType dtype) const;
  // One power iteration of every layer's spectral norm (once per training step).
  void power_iterate();
  const PatchDiscriminatorConfig& config() const { return config_; }

 private:
  PatchDiscriminatorConfig config_;
  std::vector<std::shared_ptr<SNConv2d>> convs_;  // d1 … d(L+1), score
};

}  // namespace pconv
