// pconv::Inpainter (inpainter.h) over load_model, inpaint_any_size and check_memory.
#include "apps/inference/inpainter.h"
#include "models/texture_transfer.h"

#include "apps/inference/bundled_model.h"
#include "apps/inference/hd_strategy.h"
#include "core/available_memory.h"
#include "core/backend.h"

namespace pconv {

struct Inpainter::Impl {
  InpainterOptions options;
  inference::HdOptions hd;
  Device device = Device::CPU;
  std::string model_path;
  std::unique_ptr<PConvUNet> net;
};

namespace {

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::CPU;
  if (name != "cuda") throw Error("device '" + name + "' is neither 'cpu' nor 'cuda'");
  if (!cuda_available()) throw Error("device cuda: " + cuda_unavailable_reason());
  return Device::CUDA;
}

}  // namespace

Inpainter::Inpainter(const InpainterOptions& options) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.options = options;
  m.hd.strategy = inference::parse_hd_strategy(options.hd_strategy);
  m.hd.crop_trigger_size = options.crop_trigger_size;
  m.hd.crop_margin = options.crop_margin;
  m.hd.resize_limit = options.resize_limit;
  m.hd.validate();
  check_texture_name(options.texture);
  if (!(options.memory_limit_gib >= 0))
    throw Error("memory_limit_gib must be >= 0, got " + std::to_string(options.memory_limit_gib));
  m.device = parse_device(options.device);
  m.model_path = options.model;
  if (m.model_path.empty()) {
    m.model_path = bundled::find_model();
    if (m.model_path.empty())
      throw Error(std::string("no model given and no bundled model found (") + bundled::kFileName +
                  " in ../share/pconv/ or ../data/model/ from the binary's folder " +
                  bundled::executable_dir() + ", or $PCONV_MODEL)");
  }
  m.net = inference::load_model(m.model_path, m.device);
}

Inpainter::~Inpainter() = default;
Inpainter::Inpainter(Inpainter&&) noexcept = default;
Inpainter& Inpainter::operator=(Inpainter&&) noexcept = default;

ImageU8 Inpainter::inpaint(const ImageU8& image, const MaskImage& mask) {
  Impl& m = *impl_;
  if (mask.width != image.width || mask.height != image.height)
    throw Error("the mask is " + std::to_string(mask.width) + "×" + std::to_string(mask.height) + ", the image " +
                std::to_string(image.width) + "×" + std::to_string(image.height));
  if (m.device == Device::CPU) {
    const int64_t unit = int64_t(1) << m.net->config().levels;
    const double gib = m.options.memory_limit_gib;
    const inference::MemoryCheck memory = inference::check_memory(
        m.net->config(), 1, inference::plan_passes(mask, m.hd, unit),
        gib > 0 ? int64_t(gib * double(int64_t(1) << 30)) : 0);
    if (!memory.fits())
      throw Error("a " + std::to_string(image.width) + "×" + std::to_string(image.height) + " photo needs about " +
                  format_bytes(memory.need) + " for the " + m.net->config().describe() + ", " +
                  format_bytes(memory.have) + (gib > 0 ? " allowed by memory_limit_gib" : " are available") +
                  " (use hd_strategy crop or resize, or a smaller photo)");
  }
  ImageU8 out = inference::inpaint_any_size(*m.net, image, mask, m.hd).composite;
  return apply_texture(m.options.texture, std::move(out), mask);
}

std::vector<uint8_t> Inpainter::inpaint(const uint8_t* rgb, int width, int height, const uint8_t* holes) {
  if (width <= 0 || height <= 0)
    throw Error("image size must be positive, got " + std::to_string(width) + "×" + std::to_string(height));
  if (!rgb || !holes) throw Error("null image or hole buffer");
  const size_t pixels = size_t(width) * size_t(height);
  if (int64_t(pixels) > kMaxImagePixels)
    throw Error("image of " + std::to_string(width) + "×" + std::to_string(height) + " is over the " +
                std::to_string(kMaxImagePixels) + "-pixel limit");
  ImageU8 image;
  image.width = width, image.height = height, image.channels_in_file = 3;
  image.rgb.assign(rgb, rgb + pixels * 3);
  MaskImage mask(height, width);
  for (size_t i = 0; i < pixels; ++i)
    if (holes[i]) mask.known[i] = 0.0f;
  return inpaint(image, mask).rgb;
}

const std::string& Inpainter::model_path() const { return impl_->model_path; }
std::string Inpainter::model_description() const { return impl_->net->config().describe(); }
const InpainterOptions& Inpainter::options() const { return impl_->options; }

}  // namespace pconv
