#pragma once
// VGG-16's convolutional trunk up to pool3, in torchvision's layout, as the frozen feature
// extractor of the perceptual and style losses (PAPER.md "The loss"): Ψ1 = pool1
// (features[0:5]), Ψ2 = pool2 ([5:10]), Ψ3 = pool3 ([10:17]).
//
//   features.0  conv 3→64    features.2  conv 64→64    features.4  max-pool
//   features.5  conv 64→128  features.7  conv 128→128  features.9  max-pool
//   features.10 conv 128→256 features.12, .14 conv 256→256         features.16 max-pool
//
// Every convolution is 3×3, stride 1, pad 1, followed by ReLU. The input is ImageNet-
// normalised RGB, the space the network was trained in and the space pconv's images live
// in (DESIGN.md "Numbers"), so no normalisation happens here.
#include <array>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "layers/module.h"

namespace pconv {

struct VGG16Options {
  // Channel widths are round(64·s), round(128·s), round(256·s) (at least 1): tiny test nets.
  // A scaled net cannot load the ImageNet weights (their shapes are for s = 1).
  double width_scale = 1.0;
  uint64_t seed = 0;  // random initialisation (He-normal weights, PyTorch-style biases)
  DType dtype = DType::F32;
  Device device = Device::CPU;
};

class VGG16Features : public Module {
 public:
  // torchvision's indices of the seven convolutions in `features`.
  static constexpr std::array<int, 7> kConvIndices = {0, 2, 5, 7, 10, 12, 14};
  static constexpr int kConvCount = 7;

  explicit VGG16Features(const VGG16Options& options = {});

  // Copies `features.{0,2,5,7,10,12,14}.{weight,bias}` in (converted to this net's dtype and
  // device); every other key (deeper layers, the classifier) is ignored. Throws Error naming
  // the key and the shapes when one is missing or mis-shaped; nothing is changed then.
  void load_torchvision(const std::map<std::string, Tensor>& tensors,
                        const std::string& source = "state");
  void load_torchvision(const std::string& safetensors_path);

  // x: N×3×H×W. Returns {pool1, pool2, pool3}: N×C1×H/2×W/2, N×C2×H/4×W/4, N×C3×H/8×W/8.
  // The weights never receive a gradient (PAPER.md: VGG is frozen); x does when it requires one.
  std::vector<Tensor> forward(const Tensor& x) const;

  // Output channels of conv i (0..6) and of the three returned feature maps.
  int64_t conv_out_channels(int i) const { return weights_[i]->size(0); }
  std::array<int64_t, 3> feature_channels() const;
  const Tensor& weight(int i) const { return *weights_[i]; }
  const Tensor& bias(int i) const { return *biases_[i]; }
  DType dtype() const { return weights_[0]->dtype(); }
  Device device() const { return weights_[0]->device(); }

 private:
  std::array<Tensor*, kConvCount> weights_{}, biases_{};
};

}  // namespace pconv
