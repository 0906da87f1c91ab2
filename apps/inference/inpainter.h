#pragma once
// pconv's embedding API: load a model once, then fill the holes of photos of any size.
//
//   pconv::Inpainter inpainter;                       // the bundled model, on the CPU
//   std::vector<uint8_t> out = inpainter.inpaint(rgb, width, height, holes);
//
// A thin layer over the code inpaint-run and inpaint-serve use (apps/inference/: load_model,
// the HD strategies, the CPU memory check), so a program embedding pconv gets their pixels
// exactly. Known pixels come back as the input's bytes; only holes are the network's.
// Errors are pconv::Error (a std::runtime_error) with a one-line message. One Inpainter runs one
// image at a time: use one per thread.
//
// This header needs nothing but the standard library; the pconv image overload needs
// "core/io/image.h" and "core/data/masks.h" (ImageU8, MaskImage, read_image_u8, load_mask).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pconv {

struct ImageU8;
struct MaskImage;

struct InpainterOptions {
  // A pconv checkpoint (.safetensors: trained, exported or imported; its architecture is read
  // from the file). Empty: the bundled model, found relative to the running binary
  // (<exe dir>/../share/pconv/ once installed) or through $PCONV_MODEL.
  std::string model;
  std::string device = "cpu";  // "cpu" or "cuda" (needs a build with CUDA and a GPU)
  // Photos larger than the network's comfortable size (IOPaint's HD strategies):
  //   "crop"      each hole's box plus crop_margin at full resolution, above crop_trigger_size
  //   "resize"    the photo scaled to resize_limit on its long side, the holes pasted back
  //   "original"  the whole photo in one pass
  std::string hd_strategy = "crop";
  int64_t crop_trigger_size = 800;
  int64_t crop_margin = 128;
  int64_t resize_limit = 1280;
  // CPU memory one inpaint may use, in GiB; 0: what the system has available. A photo whose
  // passes would need more is refused with an Error instead of getting the process killed.
  double memory_limit_gib = 0;
  // "transfer": the holes get the fine detail of the photo's own known pixels
  // (models/texture_transfer.h, inpaint-run --texture); "none": the network's fill as it is.
  std::string texture = "none";
};

class Inpainter {
 public:
  // Loads the model onto the device. Throws Error for a bad option, a missing or corrupt model,
  // no bundled model, or an unusable device.
  explicit Inpainter(const InpainterOptions& options = {});
  ~Inpainter();
  Inpainter(Inpainter&&) noexcept;
  Inpainter& operator=(Inpainter&&) noexcept;

  // rgb: height × width × 3 bytes, row-major, interleaved; holes: height × width bytes, nonzero
  // where a pixel is to be filled. Returns the filled photo in the same layout as rgb.
  std::vector<uint8_t> inpaint(const uint8_t* rgb, int width, int height, const uint8_t* holes);
  // pconv's own types: mask.known is 1 for known pixels, 0 for holes (load_mask reads a mask
  // file). An RGBA image keeps its alpha channel.
  ImageU8 inpaint(const ImageU8& image, const MaskImage& mask);

  const std::string& model_path() const;  // the checkpoint loaded (canonical for the bundled one)
  std::string model_description() const;  // "7-level width-64 PConvUNet", as the tools print it
  const InpainterOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pconv
