#include "models/vgg16.h"

#include <algorithm>
#include <cmath>

#include "core/autograd.h"
#include "core/io/safetensors.h"
#include "core/ops.h"

namespace pconv {

namespace {

// Input channels of the seven convolutions, as multiples of the width unit (64).
constexpr std::array<int, 7> kInUnits = {0, 1, 1, 2, 2, 4, 4};   // 0 = RGB
constexpr std::array<int, 7> kOutUnits = {1, 1, 2, 2, 4, 4, 4};

int64_t scaled(int units, double scale) {
  return std::max<int64_t>(1, std::llround(64.0 * units * scale));
}

std::string key(int conv, const char* what) {
  return "features." + std::to_string(VGG16Features::kConvIndices[size_t(conv)]) + "." + what;
}

}  // namespace

VGG16Features::VGG16Features(const VGG16Options& options) {
  if (!(options.width_scale > 0))
    throw Error("VGG16Features: width_scale must be > 0, got " +
                std::to_string(options.width_scale));
  Generator gen(options.seed);
  for (int i = 0; i < kConvCount; ++i) {
    const int64_t in = kInUnits[size_t(i)] == 0 ? 3 : scaled(kInUnits[size_t(i)], options.width_scale);
    const int64_t out = scaled(kOutUnits[size_t(i)], options.width_scale);
    const double fan_in = double(in * 9);
    // He-normal weights keep activations O(1) through the ReLUs; biases as PyTorch's default
    // (uniform ±1/√fan_in), non-zero so tests see them.
    Tensor w = Tensor::randn({out, in, 3, 3}, gen, options.dtype, options.device, 0.0,
                             std::sqrt(2.0 / fan_in));
    Tensor b = Tensor::rand({out}, gen, options.dtype, options.device, -1.0 / std::sqrt(fan_in),
                            1.0 / std::sqrt(fan_in));
    weights_[size_t(i)] = &register_parameter(key(i, "weight"), w);
    biases_[size_t(i)] = &register_parameter(key(i, "bias"), b);
  }
  freeze(true);  // PAPER.md: the VGG weights are frozen
}

std::array<int64_t, 3> VGG16Features::feature_channels() const {
  return {conv_out_channels(1), conv_out_channels(3), conv_out_channels(6)};
}

void VGG16Features::load_torchvision(const std::map<std::string, Tensor>& tensors,
                                     const std::string& source) {
  // Check every key before changing anything, so a bad file leaves the net as it was.
  std::array<const Tensor*, 2 * kConvCount> found{};
  for (int i = 0; i < 2 * kConvCount; ++i) {
    const Tensor& target = i % 2 == 0 ? *weights_[size_t(i / 2)] : *biases_[size_t(i / 2)];
    const std::string name = key(i / 2, i % 2 == 0 ? "weight" : "bias");
    auto it = tensors.find(name);
    if (it == tensors.end())
      throw Error("VGG16Features: " + source + " has no tensor '" + name + "' (expected " +
                  shape_str(target.shape()) + ")");
    if (it->second.shape() != target.shape())
      throw Error("VGG16Features: '" + name + "' in " + source + " has shape " +
                  shape_str(it->second.shape()) + ", expected " + shape_str(target.shape()));
    if (it->second.dtype() == DType::I64)
      throw Error("VGG16Features: '" + name + "' in " + source + " is i64, expected a float type");
    found[size_t(i)] = &it->second;
  }
  for (int i = 0; i < 2 * kConvCount; ++i) {
    Tensor& target = i % 2 == 0 ? *weights_[size_t(i / 2)] : *biases_[size_t(i / 2)];
    // clone(): never alias the caller's storage.
    Tensor value = found[size_t(i)]->detach().to(target.dtype()).to(target.device()).clone();
    value.set_requires_grad(false);
    target = value;
  }
}

void VGG16Features::load_torchvision(const std::string& safetensors_path) {
  load_torchvision(load_safetensors(safetensors_path).tensors, safetensors_path);
}

std::vector<Tensor> VGG16Features::forward(const Tensor& x) const {
  check_defined("VGG16Features", "x", x);
  if (x.dim() != 4 || x.size(1) != weights_[0]->size(1))
    throw Error("VGG16Features: input must be N×" + std::to_string(weights_[0]->size(1)) +
                "×H×W, got " + shape_str(x.shape()));
  if (x.dtype() != dtype() || x.device() != device())
    throw Error(std::string("VGG16Features: input is ") + dtype_name(x.dtype()) + " on " +
                device_name(x.device()) + ", weights are " + dtype_name(dtype()) + " on " +
                device_name(device()));
  if (x.size(2) < 8 || x.size(3) < 8)
    throw Error("VGG16Features: input must be at least 8×8 (three 2×2 pools), got " +
                shape_str(x.shape()));
  // detach(): the weights never join the graph, so backward computes no weight gradients
  // (the expensive half of a conv backward) even if someone unfroze the module.
  auto conv = [&](const Tensor& h, int i) {
    return relu(conv2d(h, weights_[size_t(i)]->detach(), biases_[size_t(i)]->detach(), 1, 1));
  };
  Tensor h = conv(conv(x, 0), 1);
  Tensor pool1 = max_pool2d(h);
  h = conv(conv(pool1, 2), 3);
  Tensor pool2 = max_pool2d(h);
  h = conv(conv(conv(pool2, 4), 5), 6);
  Tensor pool3 = max_pool2d(h);
  return {pool1, pool2, pool3};
}

}  // namespace pconv
