#pragma once
// Photos of any size: IOPaint's three ways of running an inpainting model on a large photo
// (its "HD strategies"), over inference::inpaint, shared by inpaint-run and inpaint-serve.
//   Crop      each hole region's bounding box plus a margin is inpainted at full resolution
//             and pasted back (boxes shifted inward at the borders); only when the long side
//             is over the trigger size, else Original.
//   Resize    the long side is scaled down to the limit, inpainted, scaled back up, and only
//             the hole pixels are pasted; only when the long side is over the limit.
//   Original  the whole photo in one pass.
// Known pixels (and the alpha channel of RGBA photos) are the input's bytes in every case.
#include <functional>
#include <string>
#include <vector>

#include "apps/inference/inference.h"

namespace pconv::inference {

enum class HdStrategy { Crop, Resize, Original };
// "crop" | "resize" | "original" in any case (IOPaint's API sends "Crop"); throws Error.
HdStrategy parse_hd_strategy(const std::string& name);
const char* hd_strategy_name(HdStrategy strategy);  // "crop", "resize", "original"
// Those names, in that order: the tools' --hd-strategy choices.
inline const std::vector<std::string> kHdStrategyNames = {"crop", "resize", "original"};

struct HdOptions {  // IOPaint's defaults
  HdStrategy strategy = HdStrategy::Crop;
  int64_t crop_trigger_size = 800;  // Crop applies when the long side is larger than this
  int64_t crop_margin = 128;        // context around each hole region's box, in pixels
  int64_t resize_limit = 1280;      // Resize applies above this long side, and scales to it
  void validate() const;            // throws Error naming the bad field
};

// True when `options` run a width × height photo as one whole-image pass at its own size
// (Original, or a photo below the Crop trigger or the Resize limit), which can be batched.
bool whole_image_pass(const HdOptions& options, int64_t width, int64_t height);

// A rectangle [x0, x1) × [y0, y1) of pixels.
struct Box {
  int64_t x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  int64_t width() const { return x1 - x0; }
  int64_t height() const { return y1 - y0; }
  int64_t area() const { return width() * height(); }
  bool operator==(const Box&) const = default;
};

// Bounding boxes of the 8-connected hole regions (as OpenCV's external contours), in the
// order their first pixel is met scanning rows.
std::vector<Box> hole_boxes(const MaskImage& mask);

// The region Crop inpaints for a hole box: grown by `margin` on every side, then to a
// multiple of `unit` (the network pads to one anyway: real context costs no more than
// padding), shifted inward where it crosses the image border, and clipped to the image.
Box crop_region(const Box& hole, int64_t margin, int64_t unit, int64_t width, int64_t height);

// One forward pass a strategy runs: the network sees `region` of the photo scaled to
// pass_width × pass_height.
struct Pass {
  Box region;
  int64_t pass_width = 0, pass_height = 0;
};
// The passes `options` makes for this mask (none when it has no hole). Crop regions that
// overlap are merged when their union costs no more than the two apart.
std::vector<Pass> plan_passes(const MaskImage& mask, const HdOptions& options, int64_t unit);

// The CPU memory check inpaint-run and inpaint-serve make before running passes (running out
// of memory mid-pass gets the process killed): the largest pass's forward_memory_bytes for
// n images against `limit_bytes`, or against available_memory_bytes() when limit_bytes is 0.
struct MemoryCheck {
  int64_t need = 0;   // bytes the largest pass needs
  int64_t have = -1;  // bytes it may use; -1 when they cannot be read (then it fits)
  bool fits() const { return have < 0 || need <= have; }
};
MemoryCheck check_memory(const PConvUNetConfig& config, int64_t n, const std::vector<Pass>& passes,
                         int64_t limit_bytes = 0);

// Thrown between passes when `cancelled` returns true (the server's time limit).
struct Cancelled : Error {
  Cancelled() : Error("cancelled") {}
};

// Inpaints a photo of any size as `options` say. raw (when asked for) is the network's output
// where it ran (scaled back for Resize) and the input elsewhere.
Inpainted inpaint_any_size(PConvUNet& net, const ImageU8& image, const MaskImage& mask,
                           const HdOptions& options, bool want_raw = false,
                           const std::function<bool()>& cancelled = {});

}  // namespace pconv::inference
