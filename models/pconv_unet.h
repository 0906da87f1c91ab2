#pragma once
// The PConv UNet of Liu et al. 2018 (PAPER.md, the UNet table), depth and width configurable.
//
// Encoder, n = 1..L, channels c_n = width · min(2^(n-1), 8):
//   pconv1      7×7 stride 2, in_channels → c_1, bias, ReLU (no BatchNorm)
//   pconv2, 3   5×5 stride 2, c_{n-1} → c_n, BatchNorm, ReLU
//   pconv4..L   3×3 stride 2, c_{n-1} → c_n, BatchNorm, ReLU
// Decoder, n = L+1..2L, skip s = 2L-n (the encoder layer of the same resolution):
//   up ×2 (nearest, features and mask; config.upsample may make the features' bilinear), concat [upsampled, skip], 3×3 stride 1 PConv,
//   pconv(L+1)..(2L-1): c_{n-1 or L} + c_s → c_s, BatchNorm, LeakyReLU(0.2)
//   pconv2L: c_1 + in_channels (the input image and its mask) → in_channels, bias, nothing else
// Optional (config.noise = K > 0, not in the paper): decoder layers at levels s = 1..K add
// per-channel-scaled Gaussian noise after BatchNorm where their skip is hole (see "noise" below).
// Checkpoint names: pconv{n}.weight, pconv{1,2L}.bias, pconv{n}.bn.{weight,bias,running_mean,
// running_var} for n = 2..2L-1.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/io/safetensors.h"
#include "core/ops.h"
#include "layers/activations.h"
#include "layers/batchnorm.h"
#include "layers/concat.h"
#include "layers/module.h"
#include "layers/partial_conv.h"
#include "layers/resample.h"

namespace pconv {

// One layer of the table above: a partial convolution and what follows it.
struct PConvUNetLayerSpec {
  int64_t in_channels, out_channels, kernel, stride;
  bool batch_norm;  // else a bias
  bool decoder;     // LeakyReLU(0.2) (none for the last layer), else ReLU
  bool noise = false;  // adds scaled noise in the skip's hole (PConvUNetConfig::noise)
};

struct PConvUNetConfig {
  int64_t levels = 8;        // encoder depth L; inputs are padded to a multiple of 2^L
  int64_t width = 64;        // channels of pconv1; deeper layers double up to 8·width
  int64_t in_channels = 3;   // image channels in and out
  // What the network's output is added to. None: the paper's model, the output is the image.
  // Harmonic: the output is harmonic_fill(image, mask) (models/harmonic_fill.h) plus the network,
  // which then learns the residual texture; the fill carries no gradient. In checkpoints as
  // "fill":"harmonic" in pconv.config (absent for None, so the paper's files are unchanged).
  enum class Fill { None, Harmonic };
  Fill fill = Fill::None;
  // Noise injection (not in the paper): the decoder layers at levels s = 1..noise (half size
  // and below) add noise · strength_c after BatchNorm, where their skip's mask is hole. Deep in
  // a large hole every encoder level is empty, so without it the decoder can only repeat the
  // same nearest-upsampled pattern there (a content-independent grid under adversarial
  // training); noise gives it something to shape into texture. The strengths
  // (pconv{n}.noise, one per channel) start at zero, so adding noise to a trained model
  // changes nothing until training moves them. In checkpoints as "noise":K (absent for 0).
  int64_t noise = 0;
  // Decoder upsampling of features (masks are always nearest). Nearest is the paper's; bilinear
  // (not in the paper) spreads a coarse level's values smoothly instead of copying each into a
  // 2×2, 4×4, ... block, which under adversarial training shows as a fine grid in the holes.
  // Bilinear runs on the CPU only so far. In checkpoints as "upsample":"bilinear" (absent for nearest).
  Upsampling upsample = Upsampling::Nearest;

  // Upper bounds, so a crafted checkpoint's pconv.config cannot ask for any allocation:
  // 16× the paper's width, 64 channels, and at most 1e9 parameters and statistics in all
  // (4 GB in f32; the paper's model has 33 M).
  static constexpr int64_t kMaxLevels = 16, kMaxWidth = 1024, kMaxInChannels = 64;
  static constexpr int64_t kMaxStateElements = 1'000'000'000;

  int64_t channels(int64_t n) const;  // output channels c_n of encoder layer n (1..L)
  std::vector<PConvUNetLayerSpec> layers() const;  // pconv1 .. pconv2L
  // Names and shapes of the state dict (parameters and BatchNorm statistics) of a model of
  // this configuration, computed without building it; and their total number of elements.
  std::map<std::string, Shape> state_shapes() const;
  int64_t state_elements() const;
  std::string to_json() const;        // {"in_channels":3,"levels":8,"width":64}[,"fill":"harmonic"][,"noise":K][,"upsample":"bilinear"]
  // Throws Error naming the text when it is not such an object or a value is out of range.
  static PConvUNetConfig from_json(const std::string& text);
  std::string describe() const;       // "8-level width-64 PConvUNet" (+ channels when not 3, + fill)
  // The most bytes of activations (f32 tensors beyond the weights) that PConvUNet::forward
  // holds at once with grad mode off, for n images of h×w (padded to a multiple of 2^L):
  // step by step what forward_no_grad keeps. Kernels' own scratch memory is not included.
  // The paper's model needs about 0.33 GiB per megapixel, mostly the last layer's input.
  int64_t inference_bytes(int64_t n, int64_t h, int64_t w) const;
  // Throws when a value is out of its range or the model would be over kMaxStateElements.
  void validate() const;
  bool operator==(const PConvUNetConfig&) const = default;
};

// One UNet layer: a partial convolution with, per the table, a BatchNorm ("bn") and an
// activation. Its parameters are named as the checkpoint wants: weight, bias, bn.*.
class PConvUNetLayer : public PartialConv2d {
 public:
  enum class Activation { None, Relu, LeakyRelu };
  PConvUNetLayer(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
                 bool batch_norm, Activation activation, Generator& gen, DType dtype,
                 Device device, bool initialize = true, bool noise = false);
  // noise: N×1×H×W (the output's size), added after BatchNorm scaled by the per-channel
  // parameter "noise"; ignored (may be undefined) for a layer without it.
  PConvResult forward(const Tensor& x, const Mask& mask, const Tensor& noise = {});
  // Inference (grad mode off): the same result, but x is overwritten with x ⊙ m and BatchNorm
  // and the activation work in place on the output.
  PConvResult forward_(Tensor& x, const Mask& mask, const Tensor& noise = {});
  BatchNorm2d* bn() const { return bn_.get(); }  // null without BatchNorm
  bool has_noise() const { return noise_ != nullptr; }

 private:
  Tensor add_noise(const Tensor& out, const Tensor& noise) const;

  std::shared_ptr<BatchNorm2d> bn_;
  Tensor* noise_ = nullptr;  // per-channel strengths, [out_channels]
  Activation activation_;
};

class PConvUNet : public Module {
 public:
  // The metadata key the configuration is stored under in checkpoints.
  static constexpr const char* kConfigKey = "pconv.config";
  // Tensors of a training checkpoint that are not the model's: "optim.*" (its Adam state) and
  // "train.*" (what else training needs, e.g. the discriminator and its Adam state).
  static bool is_training_state_key(const std::string& name);

  explicit PConvUNet(const PConvUNetConfig& config = {}, uint64_t seed = 0,
                     DType dtype = DType::F32, Device device = Device::CPU);
  // A model whose convolution weights are left unset, to be filled by load_state_dict or
  // load_checkpoint at once (skips drawing the random initial weights: half of inpaint-run's
  // start-up at 512×512). Using it before loading gives garbage.
  struct Uninitialized {};
  PConvUNet(const PConvUNetConfig& config, Uninitialized, DType dtype = DType::F32,
            Device device = Device::CPU);

  // image N×C×H×W (ImageNet-normalised, any H×W), mask N×1×H×W (1 = known, 0 = hole).
  // Returns I_out, N×C×H×W. Sizes that are not a multiple of 2^L are padded at the bottom and
  // right with hole (features 0, mask 0) and the output is cropped back.
  // With grad mode off (inference) the same values come from a pass that frees every
  // activation once consumed (see forward_no_grad); the image and mask are not modified.
  // fill: for a residual model (config.fill Harmonic), its harmonic fill of image and mask
  // computed beforehand (the training data loader's, core/data/network_fill.h), used as it is
  // instead of solving it again; N×C×H×W, the image's dtype and device. Undefined: the forward
  // computes it. An Error for a model without a fill or a fill of another shape.
  Tensor forward(const Tensor& image, const Tensor& mask, const Tensor& fill = {});
  // The same with the input mask given as groups covering C channels.
  Tensor forward(const Tensor& image, const Mask& mask, const Tensor& fill = {});

  // Fine-tune phase (PAPER.md "Phase 2"): encoder BatchNorms (pconv2..pconvL) normalise with
  // their running statistics and stop updating them; decoder BatchNorms keep training.
  void set_finetune(bool on);
  bool is_finetune() const { return finetune_; }

  // The seed of the noise a model with config.noise draws: each forward draws the same noise
  // for the same seed and input size (0 by default, so inference is deterministic; training
  // sets a new seed per step).
  void set_noise_seed(uint64_t seed) { noise_seed_ = seed; }
  uint64_t noise_seed() const { return noise_seed_; }

  // Checkpoints (DESIGN.md "Modules and checkpoints"): the state dict, the configuration under
  // kConfigKey in the metadata, and optional extra tensors, which must be named "optim.*" or "train.*"
  // (the optimiser's state, so a resume is exact).
  void save_checkpoint(const std::string& path,
                       const std::map<std::string, std::string>& metadata = {},
                       const std::map<std::string, Tensor>& optim_state = {});
  // Loads weights and statistics (strict, "optim.*" entries skipped) and returns the whole
  // file, so the caller can read the metadata and hand the tensors to Adam::load_state_dict.
  // A file without kConfigKey is checked by names and shapes alone. Throws a one-line Error
  // "<path>: checkpoint is a 4-level width-16 PConvUNet, the model is ..." when the
  // architectures differ.
  SafetensorsFile load_checkpoint(const std::string& path);
  // The configuration a checkpoint was saved with (the default when it has no kConfigKey).
  static PConvUNetConfig checkpoint_config(const std::map<std::string, std::string>& metadata);
  // Checks, before a model is built, that `tensors` hold every state tensor of `config` with
  // its shape, so building the model allocates no more than the file holds. Throws
  // "pconv3.weight has shape [..] in the file, a 3-level width-4 PConvUNet expects [..]".
  static void check_state_shapes(const PConvUNetConfig& config, const std::map<std::string, Tensor>& tensors);

  const PConvUNetConfig& config() const { return config_; }
  int64_t layer_count() const { return int64_t(layers_.size()); }  // 2L
  PConvUNetLayer& layer(int64_t n) const;                          // 1-based, as pconv{n}
  DType dtype() const { return layers_[0]->weight().dtype(); }
  Device device() const { return layers_[0]->weight().device(); }

 private:
  PConvUNet(const PConvUNetConfig& config, uint64_t seed, DType dtype, Device device, bool initialize);
  Tensor forward_no_grad(const Tensor& x, const Mask& m);
  // Unit Gaussian noise where `skip`'s (single-group) mask is hole, 0 elsewhere, N×1×H×W;
  // undefined for a layer without noise.
  Tensor hole_noise(int64_t n, const Mask& skip, Generator& gen) const;

  PConvUNetConfig config_;
  std::vector<std::shared_ptr<PConvUNetLayer>> layers_;
  Upsample upsample_;
  Concat concat_;
  bool finetune_ = false;
  uint64_t noise_seed_ = 0;
};

}  // namespace pconv
