#pragma once
// The metadata of a training checkpoint beside its tensors (apps/training/trainer.h): where
// the run was (step, phase, lr, data order), the discriminator's config, and every option the
// run was given (train.options, JSON), which a resume takes back. Readers name the file and the
// key in their one-line errors.
#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "models/patch_discriminator.h"  // kDiscPrefix, kDiscConfigKey

namespace pconv {

struct TrainOptions;

namespace training {

// Metadata keys (the model's config is under PConvUNet::kConfigKey).
inline constexpr const char* kStepKey = "train.step";
inline constexpr const char* kPhaseKey = "train.phase";  // "train" or "finetune"
inline constexpr const char* kLrKey = "train.lr";
inline constexpr const char* kDataStateKey = "train.data_state";
inline constexpr const char* kDataCountKey = "train.data_count";
inline constexpr const char* kOptionsKey = "train.options";
inline constexpr const char* kDiscLrKey = "train.d_lr";
// The discriminator's tensors and config: kDiscPrefix and kDiscConfigKey (models/patch_discriminator.h),
// present when the run has one; its Adam state ("optim.*" → "train.disc_optim.*"):
inline constexpr const char* kDiscOptimPrefix = "train.disc_optim.";
// With --ema the checkpoint's model is the average; the live weights are saved under this
// prefix, and the average's update count under kEmaUpdatesKey.
inline constexpr const char* kLivePrefix = "train.live.";
inline constexpr const char* kEmaUpdatesKey = "train.ema_updates";

using Metadata = std::map<std::string, std::string>;

// The value of `key`; an Error naming `path` when it is missing or not of the kind asked for.
const std::string& meta(const Metadata& m, const char* key, const std::string& path);
int64_t meta_int(const Metadata& m, const char* key, const std::string& path);   // ≥ 0
double meta_number(const Metadata& m, const char* key, const std::string& path);  // finite
// "<path>: metadata <key> is '<text>', not <what>".
[[noreturn]] void bad_meta(const std::string& path, const char* key, const std::string& text, const char* what);

// train.options of these options (JSON text), and the options a resume takes back from it:
// each one the command line left unset, from `saved` (the parsed train.options of `checkpoint`).
std::string saved_options_json(const TrainOptions& o);
void take_back_saved_options(TrainOptions& o, const nlohmann::json& saved, const std::string& checkpoint);

}  // namespace training
}  // namespace pconv
