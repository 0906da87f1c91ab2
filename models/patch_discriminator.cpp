#include "models/patch_discriminator.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/ops.h"

namespace pconv {

void PatchDiscriminatorConfig::validate() const {
  if (in_channels != 3 && in_channels != 4)
    throw Error("discriminator in_channels " + std::to_string(in_channels) + ": expected 3 (RGB) or 4 (RGB + mask)");
  if (width < 1 || width > kMaxWidth)
    throw Error("discriminator width " + std::to_string(width) + " out of range (1.." + std::to_string(kMaxWidth) + ")");
  if (layers < 1 || layers > kMaxLayers)
    throw Error("discriminator layers " + std::to_string(layers) + " out of range (1.." +
                std::to_string(kMaxLayers) + ")");
}

int64_t PatchDiscriminatorConfig::channels(int64_t n) const {
  return width * std::min<int64_t>(int64_t(1) << std::min<int64_t>(n - 1, 3), 8);
}

int64_t PatchDiscriminatorConfig::receptive_field() const {
  // Back from one score: two stride-1 4×4 layers, then `layers` stride-2 ones.
  int64_t r = 1;
  r = r + 3, r = r + 3;
  for (int64_t n = 0; n < layers; ++n) r = 2 * r + 2;
  return r;
}

std::string PatchDiscriminatorConfig::to_json() const {
  return nlohmann::json{{"in_channels", in_channels}, {"layers", layers}, {"width", width}}.dump();
}

PatchDiscriminatorConfig PatchDiscriminatorConfig::from_json(const std::string& text) {
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) throw Error("discriminator config is not a JSON object");
  PatchDiscriminatorConfig c;
  for (auto [key, field] : {std::pair{"in_channels", &c.in_channels}, {"layers", &c.layers}, {"width", &c.width}}) {
    if (!j.contains(key)) throw Error(std::string("discriminator config has no ") + key);
    if (!j[key].is_number_integer()) throw Error(std::string("discriminator config ") + key + " is not an integer");
    *field = j[key].get<int64_t>();
  }
  c.validate();
  return c;
}

std::string PatchDiscriminatorConfig::describe() const {
  const std::string r = std::to_string(receptive_field());
  return "PatchGAN discriminator (spectral norm), " + std::to_string(layers) + " strided layers, width " +
         std::to_string(width) + ", " + r + "×" + r + " patches";
}

PatchDiscriminator::PatchDiscriminator(const PatchDiscriminatorConfig& config, uint64_t seed, DType dtype,
                                       Device device)
    : config_(config) {
  config_.validate();
  Generator gen(seed);
  int64_t in = config_.in_channels;
  for (int64_t n = 1; n <= config_.layers + 1; ++n) {
    const int64_t out = config_.channels(n);
    const int64_t stride = n <= config_.layers ? 2 : 1;
    // append, not "d" + ...: GCC 12 inlines that operator+ into a false -Wrestrict warning.
    convs_.push_back(register_module(std::string("d").append(std::to_string(n)),
                                     std::make_shared<SNConv2d>(in, out, 4, stride, 1, gen, dtype, device)));
    in = out;
  }
  convs_.push_back(register_module("score", std::make_shared<SNConv2d>(in, 1, 4, 1, 1, gen, dtype, device)));
}

DiscriminatorOutput PatchDiscriminator::forward(const Tensor& image, const Tensor& mask) const {
  check_rank("PatchDiscriminator", "image", image, 4);
  check_rank("PatchDiscriminator", "mask", mask, 4);
  const int64_t min_side = (int64_t(1) << config_.layers) * 4;
  const bool mask_input = config_.in_channels == 4;
  if (image.size(1) != 3 || mask.size(1) != 1 || image.size(0) != mask.size(0) ||
      image.size(2) != mask.size(2) || image.size(3) != mask.size(3) || image.size(2) < min_side ||
      image.size(3) < min_side)
    throw Error("PatchDiscriminator: image " + shape_str(image.shape()) + " and mask " + shape_str(mask.shape()) +
                " do not fit the discriminator (an RGB image and a 1-channel mask, at least " +
                std::to_string(min_side) + " pixels a side)");
  DiscriminatorOutput out;
  Tensor x = mask_input ? concat({image, mask.detach()}, 1) : image;
  for (size_t i = 0; i + 1 < convs_.size(); ++i) {
    x = convs_[i]->forward(x, Activation::LeakyRelu, 0.2);  // leaky_relu(conv), one epilogue pass
    out.features.push_back(x);
  }
  out.scores = convs_.back()->forward(x);
  return out;
}

Tensor PatchDiscriminator::hole_fraction(const Tensor& mask, const Shape& scores_shape, DType dtype) const {
  check_rank("PatchDiscriminator::hole_fraction", "mask", mask, 4);
  if (scores_shape.size() != 4 || scores_shape[0] != mask.size(0) || scores_shape[1] != 1)
    throw Error("PatchDiscriminator::hole_fraction: scores " + shape_str(scores_shape) + " do not belong to mask " +
                shape_str(mask.shape()));
  // Each strided 4×4 layer (pad 1) centres output o at input 2o + 0.5, so after L of them the
  // centre is S·o + (S−1)/2 with S = 2^L; the two stride-1 4×4 layers (pad 1) then shift it by
  // one cell. Score i is centred on the S×S block whose first row is S·(i + 1).
  const int64_t stride = int64_t(1) << config_.layers;
  const int64_t n = mask.size(0), height = mask.size(2), width = mask.size(3);
  const int64_t h = scores_shape[2], w = scores_shape[3];
  const std::vector<float> known = mask.to(Device::CPU).to_float_vector();
  std::vector<double> target(size_t(n * h * w));
  for (int64_t b = 0; b < n; ++b)
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j) {
        const int64_t y0 = stride * (i + 1), x0 = stride * (j + 1);
        const int64_t y1 = std::min(y0 + stride, height), x1 = std::min(x0 + stride, width);
        double holes = 0, count = 0;
        for (int64_t y = y0; y < y1; ++y)
          for (int64_t x = x0; x < x1; ++x, ++count) holes += 1.0 - known[size_t((b * height + y) * width + x)];
        target[size_t((b * h + i) * w + j)] = count > 0 ? holes / count : 0.0;
      }
  return Tensor::from_vector(target, scores_shape, mask.device()).to(dtype);
}

void PatchDiscriminator::power_iterate() {
  for (auto& c : convs_) c->power_iterate();
}

}  // namespace pconv
