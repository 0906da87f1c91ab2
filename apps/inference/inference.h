#pragma once
// Inference with a trained PConvUNet: loading a checkpoint whatever its architecture, and
// inpainting 8-bit images (DESIGN.md "Numbers the whole project agrees on": the network works
// in ImageNet-normalised space; the composite is made in 8-bit space, so known pixels are the
// input's bytes exactly).
#include <memory>
#include <string>
#include <vector>

#include "core/data/masks.h"
#include "core/io/image.h"
#include "models/pconv_unet.h"

namespace pconv::inference {

// Builds the model the checkpoint describes (its "pconv.config" metadata; the paper's model
// when absent), loads its weights (optimiser entries skipped), switches it to eval mode and
// moves it to `device`. Throws a one-line Error "<path>: <reason>" for a missing, truncated,
// corrupt or non-PConvUNet file, or a model that is not RGB in and out.
std::unique_ptr<PConvUNet> load_model(const std::string& path, Device device = Device::CPU);

struct Inpainted {
  ImageU8 composite;  // known pixels: the input's bytes; holes: the network's output; input's alpha
  ImageU8 raw;        // the network's output everywhere (empty unless asked for)
};

// Inpaints a batch of images of one size with their masks (1 = known, same size as the
// images). An all-hole mask leaves the network nothing to read: partial convolutions output 0
// wherever their window holds no known pixel, so the result is a flat ImageNet-mean colour.
// A mask without holes returns the input unchanged. Throws Error on size disagreements.
std::vector<Inpainted> inpaint_batch(PConvUNet& net, const std::vector<const ImageU8*>& images,
                                     const std::vector<const MaskImage*>& masks, bool want_raw);
Inpainted inpaint(PConvUNet& net, const ImageU8& image, const MaskImage& mask, bool want_raw = false);

// An estimate, in bytes, of the CPU memory inpainting n images of h×w needs beyond the loaded
// weights: the forward pass's activations (PConvUNetConfig::inference_bytes), the images
// around it, and the kernels' scratch memory. It follows the measured peak RSS
// (docs/inference.md): about 0.4 GiB per megapixel for the paper's model.
int64_t forward_memory_bytes(const PConvUNetConfig& config, int64_t n, int64_t h, int64_t w);
// The memory budget of core/available_memory.h in bytes (the smallest of MemAvailable and the
// room left below the process's cgroup limits, v1 or v2); -1 when none can be read.
int64_t available_memory_bytes();

// The holes filled by models/harmonic_fill alone, no network: the starting point of a residual
// model (PConvUNetConfig::fill), and a classical baseline (inpaint-run --fill-only).
ImageU8 harmonic_inpaint(const ImageU8& image, const MaskImage& mask);

// I_comp in 8-bit space: the network's output where the mask has a hole, the input elsewhere;
// the input's alpha channel, if any, unchanged.
ImageU8 compose_u8(const ImageU8& input, const ImageU8& output, const MaskImage& mask);

}  // namespace pconv::inference
