#pragma once
// A training checkpoint -> a compact model file for inference and shipping: the weights and
// BatchNorm statistics only (no Adam state), stored as F32, F16 or BF16 (loaders convert back to
// f32), with the architecture ("pconv.config") and the training metadata kept.
#include <map>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace pconv {

struct ExportReport {
  int64_t tensors = 0, parameters = 0;  // tensors written, and their elements
  int64_t bytes = 0;                    // size of the written file
  double max_abs_error = 0;             // largest |stored − f32| over all elements
  double max_rel_error = 0;             // largest per-tensor ‖stored − f32‖∞ / ‖f32‖∞
};

// Reads `checkpoint` (any PConvUNet checkpoint pconv wrote), writes `out` atomically with
// floating-point tensors in `dtype` (I64 counters stay I64), and `extra` added to the metadata.
// Throws Error (one line, naming the file) for unreadable or non-PConvUNet inputs, values that
// overflow the chosen dtype (f16's ±65504), or an unwritable output.
ExportReport export_model(const std::string& checkpoint, const std::string& out, DType dtype,
                          const std::map<std::string, std::string>& extra = {});
// The mean of several checkpoints of one architecture (weights and BatchNorm statistics, summed
// in f64; counters and metadata from the last), exported as above, with "pconv.averaged_from"
// listing them. An adversarial run's weights wander from step to step; the mean of its last few
// checkpoints scored better than any one of them (docs/training.md, --ema).
// with_discriminator: also keep the last checkpoint's discriminator (its weights and spectral-norm
// vectors as f32, and its config; not its Adam state), so that `inpaint-train --init` of the
// file continues a texture run with a trained discriminator; an error when it has none.
ExportReport export_model(const std::vector<std::string>& checkpoints, const std::string& out, DType dtype,
                          const std::map<std::string, std::string>& extra = {}, bool with_discriminator = false);

}  // namespace pconv
