#include "apps/inference/inference.h"

#include <cstdio>

#include "core/autograd.h"
#include "core/available_memory.h"
#include "core/data/imagenet.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "models/harmonic_fill.h"

namespace pconv::inference {

std::unique_ptr<PConvUNet> load_model(const std::string& path, Device device) {
  // One read of the file: PConvUNet::load_checkpoint would need the architecture up front and
  // read the file again.
  SafetensorsFile file = load_safetensors(path);
  try {
    if (!file.tensors.count("pconv1.weight"))
      throw Error("not a PConvUNet checkpoint (no pconv1.weight among its " +
                  std::to_string(file.tensors.size()) + " tensors)");
    const PConvUNetConfig config = PConvUNet::checkpoint_config(file.metadata);
    if (config.in_channels != 3)
      throw Error("the checkpoint is " + config.describe() + "; inpainting needs 3 channels (RGB)");
    // Every tensor is in the file with its shape before anything is allocated for the model.
    PConvUNet::check_state_shapes(config, file.tensors);
    auto net = std::make_unique<PConvUNet>(config, PConvUNet::Uninitialized{});
    std::map<std::string, Tensor> weights;
    for (auto& [name, t] : file.tensors)
      if (!PConvUNet::is_training_state_key(name)) weights.emplace(name, std::move(t));
    file.tensors.clear();
    net->load_state_dict(weights, true, /*adopt=*/true);
    net->eval();
    if (device != Device::CPU) net->to(device);
    return net;
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}

int64_t forward_memory_bytes(const PConvUNetConfig& config, int64_t n, int64_t h, int64_t w) {
  // The pass's activations, the input and output images around it (8-bit and f32 copies, about
  // 12 floats a pixel), and the kernels' scratch memory and the heap's slack: together 16
  // floats a pixel and 64 MiB, which keeps the estimate a few percent above the measured peak
  // RSS minus the loaded model's (docs/inference.md, "Memory and large photos").
  const int64_t io = 16 * int64_t(sizeof(float)) * n * h * w;
  return config.inference_bytes(n, h, w) + io + (int64_t(64) << 20);
}

int64_t available_memory_bytes() { return pconv::available_memory_bytes(); }

ImageU8 compose_u8(const ImageU8& input, const ImageU8& output, const MaskImage& mask) {
  if (input.width != output.width || input.height != output.height || mask.width != input.width ||
      mask.height != input.height)
    throw Error("compose_u8: input " + std::to_string(input.width) + "×" + std::to_string(input.height) +
                ", output " + std::to_string(output.width) + "×" + std::to_string(output.height) +
                " and mask " + std::to_string(mask.width) + "×" + std::to_string(mask.height) +
                " differ in size");
  ImageU8 out = output;
  out.channels_in_file = input.channels_in_file;
  out.alpha = input.alpha;
  const size_t n = mask.known.size();
  for (size_t i = 0; i < n; ++i)
    if (mask.known[i] >= 0.5f)
      for (size_t c = 0; c < 3; ++c) out.rgb[i * 3 + c] = input.rgb[i * 3 + c];
  return out;
}

ImageU8 harmonic_inpaint(const ImageU8& image, const MaskImage& mask) {
  if (mask.width != image.width || mask.height != image.height)
    throw Error("the mask is " + std::to_string(mask.width) + "×" + std::to_string(mask.height) + ", the image " +
                std::to_string(image.width) + "×" + std::to_string(image.height));
  NoGradGuard no_grad;
  const Tensor m = mask_to_tensor(mask);
  const Tensor x = mul(image_to_tensor(image).reshape({1, 3, image.height, image.width}), m);
  return compose_u8(image, tensor_to_image(harmonic_fill(x, m).reshape({3, image.height, image.width})), mask);
}

std::vector<Inpainted> inpaint_batch(PConvUNet& net, const std::vector<const ImageU8*>& images,
                                     const std::vector<const MaskImage*>& masks, bool want_raw) {
  if (images.empty() || images.size() != masks.size())
    throw Error("inpaint_batch: " + std::to_string(images.size()) + " images and " +
                std::to_string(masks.size()) + " masks");
  const int width = images[0]->width, height = images[0]->height;
  std::vector<Tensor> xs, ms;
  for (size_t i = 0; i < images.size(); ++i) {
    const ImageU8& img = *images[i];
    const MaskImage& m = *masks[i];
    if (img.width != width || img.height != height)
      throw Error("inpaint_batch: images of different sizes in one batch (" + std::to_string(width) + "×" +
                  std::to_string(height) + ", " + std::to_string(img.width) + "×" +
                  std::to_string(img.height) + ")");
    if (m.width != img.width || m.height != img.height)
      throw Error("the mask is " + std::to_string(m.width) + "×" + std::to_string(m.height) +
                  ", the image " + std::to_string(img.width) + "×" + std::to_string(img.height));
    xs.push_back(image_to_tensor(img).reshape({1, 3, height, width}));
    ms.push_back(mask_to_tensor(m));
  }

  NoGradGuard no_grad;
  const Device device = net.device();
  Tensor mask = ms.size() == 1 ? ms[0] : concat(ms, 0);
  ms.clear();
  // Holes are 0 in normalised space (DESIGN.md); partial convolution ignores them anyway.
  Tensor x = mul(imagenet_normalize(xs.size() == 1 ? xs[0] : concat(xs, 0)), mask);
  xs.clear();
  if (device != Device::CPU) {
    x = x.to(device);
    mask = mask.to(device);
  }
  // BatchNorm must use its running statistics; a caller in the middle of training gets its
  // mode back.
  struct EvalScope {
    PConvUNet& net;
    bool was_training;
    ~EvalScope() { net.train(was_training); }
  } scope{net, net.is_training()};
  net.eval();
  Tensor out = imagenet_denormalize(net.forward(x, mask));
  if (device != Device::CPU) out = out.to(Device::CPU);

  std::vector<Inpainted> results(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    const int64_t n = int64_t(i);
    ImageU8 raw = tensor_to_image(slice(out, 0, n, n + 1).reshape({3, height, width}));
    results[i].composite = compose_u8(*images[i], raw, *masks[i]);
    if (want_raw) results[i].raw = std::move(raw);
  }
  return results;
}

Inpainted inpaint(PConvUNet& net, const ImageU8& image, const MaskImage& mask, bool want_raw) {
  return std::move(inpaint_batch(net, {&image}, {&mask}, want_raw)[0]);
}

}  // namespace pconv::inference
