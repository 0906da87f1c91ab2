#include "models/pconv_unet.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "models/harmonic_fill.h"


namespace pconv {

// ---------------------------------------------------------------- configuration

int64_t PConvUNetConfig::channels(int64_t n) const {
  if (n < 1 || n > levels)
    throw Error("PConvUNetConfig::channels: layer " + std::to_string(n) + " is not an encoder layer 1.." +
                std::to_string(levels));
  // PAPER.md: 64, 128, 256, 512, 512, ... — doubling per level, capped at 8× the base width.
  return width * std::min<int64_t>(int64_t(1) << std::min<int64_t>(n - 1, 3), 8);
}

namespace {

// a·b, or an Error when it does not fit in int64 (shapes from files are checked before use).
int64_t checked_mul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) throw Error("PConvUNetConfig: a shape's size overflows");
  return r;
}

void check_ranges(const PConvUNetConfig& c) {
  using C = PConvUNetConfig;
  if (c.levels < 1 || c.levels > C::kMaxLevels || c.width < 1 || c.width > C::kMaxWidth || c.in_channels < 1 ||
      c.in_channels > C::kMaxInChannels)
    throw Error("PConvUNetConfig: levels " + std::to_string(c.levels) + " (1.." + std::to_string(C::kMaxLevels) +
                "), width " + std::to_string(c.width) + " (1.." + std::to_string(C::kMaxWidth) + "), in_channels " +
                std::to_string(c.in_channels) + " (1.." + std::to_string(C::kMaxInChannels) + ") out of range");
  if (c.noise < 0 || c.noise > c.levels - 1)
    throw Error("PConvUNetConfig: noise " + std::to_string(c.noise) + " is not a number of decoder levels 0.." +
                std::to_string(c.levels - 1));
}

}  // namespace

std::vector<PConvUNetLayerSpec> PConvUNetConfig::layers() const {
  check_ranges(*this);
  const int64_t L = levels;
  std::vector<PConvUNetLayerSpec> out;
  for (int64_t n = 1; n <= L; ++n) {
    const int64_t in = n == 1 ? in_channels : channels(n - 1);
    const int64_t kernel = n == 1 ? 7 : n <= 3 ? 5 : 3;
    out.push_back({in, channels(n), kernel, 2, n > 1, false});
  }
  for (int64_t n = L + 1; n <= 2 * L; ++n) {
    // Decoder layer n sees the previous layer's c_{s+1} channels upsampled and skip s = 2L - n
    // (s = 0: the input image), and maps them to the skip's width.
    const int64_t s = 2 * L - n;
    const int64_t skip = s == 0 ? in_channels : channels(s);
    out.push_back({channels(s + 1) + skip, skip, 3, 1, s != 0, true, s >= 1 && s <= noise});
  }
  return out;
}

std::map<std::string, Shape> PConvUNetConfig::state_shapes() const {
  std::map<std::string, Shape> shapes;
  int64_t n = 0;
  for (const PConvUNetLayerSpec& l : layers()) {
    const std::string name = "pconv" + std::to_string(++n);
    shapes[name + ".weight"] = {l.out_channels, l.in_channels, l.kernel, l.kernel};
    if (l.batch_norm)
      for (const char* b : {"weight", "bias", "running_mean", "running_var"}) shapes[name + ".bn." + b] = {l.out_channels};
    else
      shapes[name + ".bias"] = {l.out_channels};
    if (l.noise) shapes[name + ".noise"] = {l.out_channels};
  }
  return shapes;
}

int64_t PConvUNetConfig::state_elements() const {
  int64_t total = 0;
  for (const auto& [name, shape] : state_shapes()) {
    int64_t numel = 1;
    for (int64_t d : shape) numel = checked_mul(numel, d);
    if (__builtin_add_overflow(total, numel, &total)) throw Error("PConvUNetConfig: the model's size overflows");
  }
  return total;
}

void PConvUNetConfig::validate() const {
  check_ranges(*this);
  const int64_t elements = state_elements();
  if (elements > kMaxStateElements)
    throw Error("PConvUNetConfig: " + describe() + " has " + std::to_string(elements) +
                " parameters and statistics, over the limit of " + std::to_string(kMaxStateElements));
}

std::string PConvUNetConfig::to_json() const {
  nlohmann::json j{{"levels", levels}, {"width", width}, {"in_channels", in_channels}};
  if (fill == Fill::Harmonic) j["fill"] = "harmonic";
  if (noise > 0) j["noise"] = noise;
  if (upsample == Upsampling::Bilinear) j["upsample"] = "bilinear";
  return j.dump();
}

PConvUNetConfig PConvUNetConfig::from_json(const std::string& text) {
  PConvUNetConfig c;
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  // Quoted in messages, cut short: the text may come from a hostile file.
  const std::string quoted = text.size() <= 80 ? text : text.substr(0, 77) + "...";
  if (!j.is_object())
    throw Error("PConvUNetConfig: '" + quoted + "' is not a JSON object");
  // Missing fields keep the paper's defaults; unknown fields are ignored (newer writers).
  for (auto [key, field] : {std::pair{"levels", &c.levels}, std::pair{"width", &c.width},
                            std::pair{"in_channels", &c.in_channels}, std::pair{"noise", &c.noise}}) {
    if (!j.contains(key)) continue;
    if (!j[key].is_number_integer())
      throw Error("PConvUNetConfig: '" + std::string(key) + "' in '" + quoted + "' is not an integer");
    *field = j[key].get<int64_t>();
  }
  if (j.contains("fill")) {
    const nlohmann::json& f = j["fill"];
    if (!f.is_string() || (f.get<std::string>() != "harmonic" && f.get<std::string>() != "none"))
      throw Error("PConvUNetConfig: 'fill' in '" + quoted + "' is not \"harmonic\" or \"none\"");
    c.fill = f.get<std::string>() == "harmonic" ? Fill::Harmonic : Fill::None;
  }
  if (j.contains("upsample")) {
    const nlohmann::json& u = j["upsample"];
    if (!u.is_string() || (u.get<std::string>() != "bilinear" && u.get<std::string>() != "nearest"))
      throw Error("PConvUNetConfig: 'upsample' in '" + quoted + "' is not \"nearest\" or \"bilinear\"");
    c.upsample = u.get<std::string>() == "bilinear" ? Upsampling::Bilinear : Upsampling::Nearest;
  }
  c.validate();
  return c;
}

std::string PConvUNetConfig::describe() const {
  std::string s = std::to_string(levels);
  s.append("-level width-").append(std::to_string(width));
  if (in_channels != 3) s.append(" ").append(std::to_string(in_channels)).append("-channel");
  s.append(" PConvUNet");
  if (fill == Fill::Harmonic) s.append(" on a harmonic fill");
  if (noise > 0) s.append(" with noise at ").append(std::to_string(noise)).append(noise == 1 ? " level" : " levels");
  if (upsample == Upsampling::Bilinear) s.append(noise > 0 ? " and" : " with").append(" bilinear upsampling");
  return s;
}

int64_t PConvUNetConfig::inference_bytes(int64_t n, int64_t h, int64_t w) const {
  const int64_t L = levels, unit = int64_t(1) << L;
  const int64_t H = (h + unit - 1) / unit * unit, W = (w + unit - 1) / unit * unit;
  auto pixels = [&](int64_t level) { return (H >> level) * (W >> level); };  // at 1/2^level
  auto width_at = [&](int64_t level) { return level == 0 ? in_channels : channels(level); };
  // Kept all along: the input and its one-channel mask (and, when padded, the caller's
  // unpadded ones beside them). Then each encoder output with its mask, until its decoder
  // level has read it.
  const bool padded = H != h || W != w;
  int64_t kept = (in_channels + 1) * (pixels(0) + (padded ? h * w : 0));
  // Layer 1 masks a copy of the input (freed after its convolution); its ReLU makes a new tensor.
  int64_t peak = kept + std::max(in_channels * pixels(0) + (channels(1) + 2) * pixels(1),
                                 (2 * channels(1) + 2) * pixels(1));
  for (int64_t l = 1; l < L; ++l) {
    kept += (channels(l) + 1) * pixels(l);
    // Layer l+1 masks its input in place; output, count and new mask are new.
    peak = std::max(peak, kept + (channels(l + 1) + 2) * pixels(l + 1));
  }
  int64_t current = (channels(L) + 1) * pixels(L);
  for (int64_t s = L - 1; s >= 0; --s) {
    // Decoder level s: the upsampled input and the skip joined in one buffer, plus the
    // upsampled mask; then the skip (not the input) and the previous output are freed, and
    // the output, its count and its new mask are made.
    const int64_t joined = (channels(s + 1) + width_at(s) + 1) * pixels(s);
    peak = std::max(peak, kept + current + joined);
    if (s > 0) kept -= (width_at(s) + 1) * pixels(s);
    peak = std::max(peak, kept + joined + (width_at(s) + 2) * pixels(s));
    current = (width_at(s) + 1) * pixels(s);
  }
  // The output cropped back to h×w beside the padded one.
  if (padded) peak = std::max(peak, kept + current + in_channels * h * w);
  // A residual model keeps its fill (and, while it is made, a copy and the mask as floats)
  // from the start to the end.
  if (fill == Fill::Harmonic) peak += 2 * in_channels * h * w + h * w;
  // Noise: a level's draw and its hole-masked copy, at most at half size (level 1).
  if (noise > 0) peak += 2 * pixels(1);
  // And 64 KiB for the small tensors beside those (per-channel vectors, scalars).
  return (peak * int64_t(sizeof(float)) + (int64_t(64) << 10)) * n;
}

namespace {

// "an 8-level ...", "a 4-level ...": English articles before numbers spoken with a vowel.
std::string with_article(const PConvUNetConfig& c) {
  const bool vowel = c.levels == 8 || c.levels == 11 || c.levels == 18;
  return (vowel ? "an " : "a ") + c.describe();
}

}  // namespace

// ---------------------------------------------------------------- one layer

PConvUNetLayer::PConvUNetLayer(int64_t in_channels, int64_t out_channels, int64_t kernel,
                               int64_t stride, bool batch_norm, Activation activation,
                               Generator& gen, DType dtype, Device device, bool initialize, bool noise)
    // PAPER.md: convolutions followed by BatchNorm have no bias.
    : PartialConv2d(in_channels, out_channels, kernel, stride, !batch_norm, gen, dtype, device, initialize),
      activation_(activation) {
  if (batch_norm) bn_ = register_module("bn", std::make_shared<BatchNorm2d>(out_channels, dtype, device));
  if (noise) noise_ = &register_parameter("noise", Tensor::zeros({out_channels}, dtype, device));
}

Tensor PConvUNetLayer::add_noise(const Tensor& out, const Tensor& noise) const {
  if (!noise_ || !noise.defined()) return out;
  return add(out, mul(noise, noise_->reshape({1, noise_->size(0), 1, 1})));
}

namespace {
pconv::Activation fused_activation(PConvUNetLayer::Activation a) {
  switch (a) {
    case PConvUNetLayer::Activation::Relu: return pconv::Activation::Relu;
    case PConvUNetLayer::Activation::LeakyRelu: return pconv::Activation::LeakyRelu;
    case PConvUNetLayer::Activation::None: break;
  }
  return pconv::Activation::None;
}
}  // namespace

// With BatchNorm, the BatchNorm, noise and activation are one fused op with the values of the
// composition below (core/ops.h batch_norm_activation); without, there is no noise (the first
// and last layers) and the activation follows the bias.
PConvResult PConvUNetLayer::forward(const Tensor& x, const Mask& mask, const Tensor& noise) {
  PConvResult r = PartialConv2d::forward(x, mask);
  if (bn_) {
    const bool noisy = noise_ && noise.defined();
    r.out = bn_->forward(r.out, noisy ? noise : Tensor(), noisy ? *noise_ : Tensor(), fused_activation(activation_),
                         0.2);
    return r;
  }
  r.out = add_noise(r.out, noise);
  switch (activation_) {
    case Activation::None: break;
    case Activation::Relu: r.out = relu(r.out); break;
    case Activation::LeakyRelu: r.out = leaky_relu(r.out, 0.2); break;
  }
  return r;
}

PConvResult PConvUNetLayer::forward_(Tensor& x, const Mask& mask, const Tensor& noise) {
  PConvResult r = partial_conv2d_(x, mask, weight(), bias(), stride(), padding());
  if (bn_) {
    const bool noisy = noise_ && noise.defined();
    bn_->forward_(r.out, noisy ? noise : Tensor(), noisy ? *noise_ : Tensor(), fused_activation(activation_), 0.2);
    return r;
  }
  r.out = add_noise(r.out, noise);
  switch (activation_) {
    case Activation::None: break;
    case Activation::Relu: relu_(r.out); break;
    case Activation::LeakyRelu: leaky_relu_(r.out, 0.2); break;
  }
  return r;
}

// ---------------------------------------------------------------- the network

PConvUNet::PConvUNet(const PConvUNetConfig& config, uint64_t seed, DType dtype, Device device)
    : PConvUNet(config, seed, dtype, device, true) {}

PConvUNet::PConvUNet(const PConvUNetConfig& config, Uninitialized, DType dtype, Device device)
    : PConvUNet(config, 0, dtype, device, false) {}

PConvUNet::PConvUNet(const PConvUNetConfig& config, uint64_t seed, DType dtype, Device device, bool initialize)
    : config_(config), upsample_(config.upsample) {
  config_.validate();
  Generator gen(seed);
  using Act = PConvUNetLayer::Activation;
  const std::vector<PConvUNetLayerSpec> specs = config_.layers();
  for (const PConvUNetLayerSpec& l : specs) {
    const std::string name = "pconv" + std::to_string(layers_.size() + 1);
    const Act act = !l.decoder ? Act::Relu : &l == &specs.back() ? Act::None : Act::LeakyRelu;
    layers_.push_back(register_module(
        name, std::make_shared<PConvUNetLayer>(l.in_channels, l.out_channels, l.kernel, l.stride, l.batch_norm, act,
                                               gen, dtype, device, initialize, l.noise)));
  }
}

PConvUNetLayer& PConvUNet::layer(int64_t n) const {
  if (n < 1 || n > layer_count())
    throw Error("PConvUNet::layer: " + std::to_string(n) + " is not a layer 1.." +
                std::to_string(layer_count()));
  return *layers_[size_t(n - 1)];
}

namespace {

// harmonic_fill of each mask group's channels with that group's mask (one group of all
// channels, the usual case, is a single call).
Tensor harmonic_fill_groups(const Tensor& image, const Mask& mask) {
  std::vector<Tensor> parts;
  int64_t c0 = 0;
  for (const MaskGroup& g : mask) {
    const Tensor channels = mask.size() == 1 ? image : slice(image, 1, c0, c0 + g.channels);
    parts.push_back(harmonic_fill(channels.detach(), g.mask));
    c0 += g.channels;
  }
  return parts.size() == 1 ? parts[0] : concat(parts, 1);
}

}  // namespace

Tensor PConvUNet::forward(const Tensor& image, const Tensor& mask, const Tensor& fill) {
  check_rank("PConvUNet", "mask", mask, 4);
  check_rank("PConvUNet", "image", image, 4);
  return forward(image, Mask{{image.size(1), mask}}, fill);
}

Tensor PConvUNet::forward(const Tensor& image, const Mask& mask, const Tensor& fill) {
  check_rank("PConvUNet", "image", image, 4);
  if (image.size(1) != config_.in_channels)
    throw Error("PConvUNet: image " + shape_str(image.shape()) + " has " +
                std::to_string(image.size(1)) + " channels, the model takes " +
                std::to_string(config_.in_channels));
  const int64_t L = config_.levels, H = image.size(2), W = image.size(3);
  // Pad to a multiple of 2^L; the padding is hole, which partial convolution treats exactly
  // like its own zero padding at the border.
  const int64_t unit = int64_t(1) << L;
  const int64_t pad_h = (unit - H % unit) % unit, pad_w = (unit - W % unit) % unit;
  // The residual model's starting point, from the unpadded image (padding is hole to the fill
  // as well, so filling the padded image would give the same pixels inside).
  if (fill.defined()) {
    if (config_.fill != PConvUNetConfig::Fill::Harmonic)
      throw Error("PConvUNet: given a fill, but " + config_.describe() + " has none");
    if (fill.shape() != image.shape() || fill.dtype() != image.dtype() || fill.device() != image.device())
      throw Error("PConvUNet: fill " + shape_str(fill.shape()) + " does not match image " + shape_str(image.shape()) +
                  " (same shape, dtype and device)");
  }
  const Tensor base = config_.fill != PConvUNetConfig::Fill::Harmonic ? Tensor()
                      : fill.defined()                                ? fill.detach()
                                                                      : harmonic_fill_groups(image, mask);
  auto finish = [&](const Tensor& out) {
    Tensor y = pad_h || pad_w ? crop2d(out, 0, 0, H, W) : out;
    return base.defined() ? add(y, base) : y;
  };
  Tensor x = image;
  Mask m = mask;
  if (pad_h || pad_w) {
    x = pad2d(image, 0, pad_h, 0, pad_w, 0.0);
    for (MaskGroup& g : m) g.mask = pad2d(g.mask, 0, pad_h, 0, pad_w, 0.0);
  }
  if (!grad_mode_enabled()) return finish(forward_no_grad(x, m));

  std::vector<MaskedFeatures> encoded{{x, m}};
  for (int64_t n = 1; n <= L; ++n) {
    PConvResult r = layers_[size_t(n - 1)]->forward(encoded.back().x, encoded.back().mask);
    encoded.push_back({r.out, r.mask});
  }
  MaskedFeatures current = encoded.back();
  Generator noise_gen(noise_seed_);
  for (int64_t n = L + 1; n <= 2 * L; ++n) {
    const MaskedFeatures& skip = encoded[size_t(2 * L - n)];
    MaskedFeatures joined = concat_.forward(
        MaskedFeatures{upsample_.forward(current.x), upsample_.forward(current.mask)}, skip);
    const Tensor noise = hole_noise(n, skip.mask, noise_gen);
    PConvResult r = layers_[size_t(n - 1)]->forward(joined.x, joined.mask, noise);
    current = {r.out, r.mask};
  }
  return finish(current.x);
}

namespace {
// Freed decoder inputs at least this large are given back to the system (see below).
constexpr size_t kReleaseBytes = size_t(256) << 20;
}  // namespace

// Inference keeps only what is still to be read: the weights, the encoder outputs until their
// decoder level has used them as skips, and one layer's input and output. The decoder's input
// (upsampled features and skip) is built in one buffer, masked in place, and freed after its
// convolution; BatchNorm and the activation work in place. Same kernels in the same order as
// the graph-recording pass, so the values are identical (tests/test_unet.cpp). For the paper's
// model the peak is the last decoder layer: its 67-channel input at full size.
Tensor PConvUNet::forward_no_grad(const Tensor& x, const Mask& m) {
  const int64_t L = config_.levels;
  std::vector<MaskedFeatures> skips(size_t(L) + 1);
  skips[0] = {x, m};
  // Layer 1 reads the caller's image, which must stay as it is; deeper layers read our own
  // activations and mask them in place (the decoder masks its skip channels again with the
  // same mask, which changes nothing).
  PConvResult r = layers_[0]->forward(x, m);
  for (int64_t n = 2; n <= L; ++n) {
    MaskedFeatures& input = skips[size_t(n - 1)];
    input = {r.out, r.mask};
    r = layers_[size_t(n - 1)]->forward_(input.x, input.mask);
  }
  MaskedFeatures current{r.out, r.mask};
  Generator noise_gen(noise_seed_);  // the same draws in the same order as forward's
  for (int64_t n = L + 1; n <= 2 * L; ++n) {
    MaskedFeatures& skip = skips[size_t(2 * L - n)];
    Tensor joined = upsample_concat(current.x, skip.x, config_.upsample);
    const Mask joined_mask = concat(upsample_nearest2x(current.mask), skip.mask);
    const Tensor noise = hole_noise(n, skip.mask, noise_gen);
    current = {};
    skip = {};
    PConvResult out = layers_[size_t(n - 1)]->forward_(joined, joined_mask, noise);
    const size_t freed = joined.nbytes();
    joined = {};
    current = {out.out, out.mask};
    // Each level's input is 2–4× the last one's, so the heap cannot place it where the last
    // was freed, and would keep every level's pages at once (2048²: peak RSS 3.3 GiB without
    // this, 1.6 GiB with it; docs/inference.md). Small inputs stay in the heap: giving their
    // pages back would cost page faults in every pass for little memory.
    if (freed >= kReleaseBytes) backend(device()).release_free_memory();
  }
  return current.x;
}

Tensor PConvUNet::hole_noise(int64_t n, const Mask& skip, Generator& gen) const {
  if (!layers_[size_t(n - 1)]->has_noise()) return {};
  // Encoder outputs (the skips at levels ≥ 1) carry one mask group.
  const Tensor& known = skip.front().mask;
  const Tensor noise = Tensor::randn(known.shape(), gen, known.dtype(), known.device());
  return mul(noise, rsub(1.0, known));
}

void PConvUNet::set_finetune(bool on) {
  finetune_ = on;
  for (int64_t n = 2; n <= config_.levels; ++n) layer(n).bn()->set_use_running_stats(on);
}

// ---------------------------------------------------------------- checkpoints

namespace {

bool is_optim_key(const std::string& name) { return PConvUNet::is_training_state_key(name); }

}  // namespace

bool PConvUNet::is_training_state_key(const std::string& name) {
  return name.rfind("optim.", 0) == 0 || name.rfind("train.", 0) == 0;
}

void PConvUNet::save_checkpoint(const std::string& path,
                                const std::map<std::string, std::string>& metadata,
                                const std::map<std::string, Tensor>& optim_state) {
  std::map<std::string, Tensor> tensors = state_dict();
  for (const auto& [name, t] : optim_state) {
    if (!is_optim_key(name))
      throw Error("PConvUNet::save_checkpoint: extra tensor '" + name + "' must be named optim.* or train.*");
    tensors[name] = t;
  }
  std::map<std::string, std::string> meta = metadata;
  meta[kConfigKey] = config_.to_json();
  save_safetensors(path, tensors, meta);
}

PConvUNetConfig PConvUNet::checkpoint_config(const std::map<std::string, std::string>& metadata) {
  auto it = metadata.find(kConfigKey);
  return it == metadata.end() ? PConvUNetConfig{} : PConvUNetConfig::from_json(it->second);
}

void PConvUNet::check_state_shapes(const PConvUNetConfig& config, const std::map<std::string, Tensor>& tensors) {
  for (const auto& [name, shape] : config.state_shapes()) {
    auto it = tensors.find(name);
    if (it == tensors.end())
      throw Error("missing " + name + " (" + with_article(config) + " has it)");
    if (it->second.shape() != shape)
      throw Error(name + " has shape " + shape_str(it->second.shape()) + " in the file, " + with_article(config) +
                  " expects " + shape_str(shape));
  }
}

SafetensorsFile PConvUNet::load_checkpoint(const std::string& path) {
  SafetensorsFile file = load_safetensors(path);
  try {
    if (file.metadata.count(kConfigKey)) {
      const PConvUNetConfig saved = checkpoint_config(file.metadata);
      if (saved != config_)
        throw Error("checkpoint is " + with_article(saved) + ", the model is " + with_article(config_));
    }
    std::map<std::string, Tensor> weights;
    for (const auto& [name, t] : file.tensors)
      if (!is_optim_key(name)) weights.emplace(name, t);
    load_state_dict(weights, true);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  return file;
}

}  // namespace pconv
