#include "apps/training/checkpoint_metadata.h"

#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>

#include "apps/training/trainer.h"

namespace pconv {
namespace training {

const std::string& meta(const Metadata& m, const char* key, const std::string& path) {
  auto it = m.find(key);
  if (it == m.end())
    throw Error(path + ": not a training checkpoint of inpaint-train (no " + key + " in its metadata)");
  return it->second;
}

[[noreturn]] void bad_meta(const std::string& path, const char* key, const std::string& text, const char* what) {
  const std::string shown = text.size() <= 40 ? text : text.substr(0, 37) + "...";
  throw Error(path + ": metadata " + key + " is '" + shown + "', not " + what);
}

int64_t meta_int(const Metadata& m, const char* key, const std::string& path) {
  const std::string& text = meta(m, key, path);
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || v < 0)
    bad_meta(path, key, text, "a non-negative integer");
  return v;
}

double meta_number(const Metadata& m, const char* key, const std::string& path) {
  const std::string& text = meta(m, key, path);
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || !std::isfinite(v))
    bad_meta(path, key, text, "a finite number");
  return v;
}

namespace {

// A number field of the train.options JSON (nullopt when absent).
std::optional<double> option_number(const nlohmann::json& o, const char* field, const std::string& path) {
  if (!o.contains(field)) return std::nullopt;
  const nlohmann::json& v = o[field];
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0)
    bad_meta(path, (std::string(kOptionsKey) + "." + field).c_str(), v.dump(), "a non-negative number");
  return v.get<double>();
}

// A string field of the train.options JSON ("" when absent).
std::string option_string(const nlohmann::json& o, const char* field, const std::string& path) {
  if (!o.contains(field)) return "";
  if (!o[field].is_string()) bad_meta(path, (std::string(kOptionsKey) + "." + field).c_str(), o[field].dump(), "a string");
  return o[field].get<std::string>();
}

// An integer field of the train.options JSON (0 when absent).
int64_t option_int(const nlohmann::json& o, const char* field, const std::string& path) {
  if (!o.contains(field)) return 0;
  const nlohmann::json& v = o[field];
  if (!v.is_number_integer() || v.get<int64_t>() < 0)
    bad_meta(path, (std::string(kOptionsKey) + "." + field).c_str(), v.dump(), "a non-negative integer");
  return v.get<int64_t>();
}

// The options a checkpoint saves under train.options, one row each, so that what is saved,
// what a resume takes back and what the ranks compare cannot drift apart. `save` gives the
// value (null: not saved, for a weight left at its default); `resume`, where a resume takes
// the option back, sets it from the saved value unless the command line gave one (the others
// come back another way: levels, width, fill and noise from the model's config, lr from
// train.lr, seed from the data state, finetune from train.phase, or not at all).
struct SavedOption {
  const char* key;
  nlohmann::json (*save)(const TrainOptions&) = nullptr;
  void (*resume)(TrainOptions&, const nlohmann::json& saved, const std::string& checkpoint) = nullptr;
  // Instead of save and resume, for a number left unset unless given (the loss weights): saved
  // when set, taken back unless the command line gives it.
  std::optional<double> TrainOptions::*number = nullptr;
  // Instead of save and resume, for a text or a count whose unset value is "" or 0: always
  // saved, taken back unless the command line gives it.
  std::string TrainOptions::*text = nullptr;
  int64_t TrainOptions::*count = nullptr;
};

SavedOption text_option(const char* key, std::string TrainOptions::*field) {
  SavedOption o{key};
  o.text = field;
  return o;
}

SavedOption count_option(const char* key, int64_t TrainOptions::*field) {
  SavedOption o{key};
  o.count = field;
  return o;
}

nlohmann::json saved_value(const SavedOption& option, const TrainOptions& o) {
  if (option.text) return o.*option.text;
  if (option.count) return o.*option.count;
  if (!option.number) return option.save(o);
  const std::optional<double>& v = o.*option.number;
  return v ? nlohmann::json(*v) : nlohmann::json();
}

void take_back(const SavedOption& option, TrainOptions& o, const nlohmann::json& saved, const std::string& checkpoint) {
  if (option.text) {
    if ((o.*option.text).empty()) o.*option.text = option_string(saved, option.key, checkpoint);
  } else if (option.count) {
    if (o.*option.count == 0) o.*option.count = option_int(saved, option.key, checkpoint);
  } else if (option.number) {
    if (!(o.*option.number)) o.*option.number = option_number(saved, option.key, checkpoint);
  } else if (option.resume) {
    option.resume(o, saved, checkpoint);
  }
}

// style_features comes before vgg: random features replace --vgg's network.
const SavedOption kSavedOptions[] = {
    // A resume reads the same folders unless the command line names others.
    text_option("data", &TrainOptions::data_dir),
    text_option("val", &TrainOptions::val_dir),
    text_option("masks", &TrainOptions::mask_dir),
    count_option("size", &TrainOptions::size),
    count_option("batch", &TrainOptions::batch),
    {"levels", [](const TrainOptions& o) -> nlohmann::json { return o.levels; }, nullptr},
    {"width", [](const TrainOptions& o) -> nlohmann::json { return o.width; }, nullptr},
    {"fill", [](const TrainOptions& o) -> nlohmann::json { return o.fill; }, nullptr},
    {"noise", [](const TrainOptions& o) -> nlohmann::json { return o.noise; }, nullptr},
    {"upsample", [](const TrainOptions& o) -> nlohmann::json { return o.upsample; }, nullptr},
    {"lr", [](const TrainOptions& o) -> nlohmann::json { return o.lr; }, nullptr},
    {"seed", [](const TrainOptions& o) -> nlohmann::json { return *o.seed; }, nullptr},
    count_option("steps", &TrainOptions::steps),
    {"finetune", [](const TrainOptions& o) -> nlohmann::json { return o.finetune; }, nullptr},
    {"init", [](const TrainOptions& o) -> nlohmann::json { return o.init; }, nullptr},
    {"device", [](const TrainOptions& o) -> nlohmann::json { return device_name(o.device); }, nullptr},
    text_option("style_features", &TrainOptions::style_features),
    {"vgg", [](const TrainOptions& o) -> nlohmann::json { return o.vgg; },
     [](TrainOptions& o, const nlohmann::json& s, const std::string& c) {
       // A run with random features keeps them (a VGG file cannot replace them in a resume);
       // one without keeps its --vgg unless given.
       if (o.vgg.empty()) o.vgg = o.style_features.empty() ? option_string(s, "vgg", c) : "none";
     }},
    {"adversarial", nullptr, nullptr, &TrainOptions::adversarial},
    {"feature_matching", nullptr, nullptr, &TrainOptions::feature_matching},
    text_option("gan_loss", &TrainOptions::gan_loss),
    text_option("d_target", &TrainOptions::d_target),
    {"d_warmup", [](const TrainOptions& o) -> nlohmann::json { return o.d_warmup ? nlohmann::json(*o.d_warmup) : nlohmann::json(); },
     [](TrainOptions& o, const nlohmann::json& s, const std::string& c) {
       if (!o.d_warmup && s.contains("d_warmup") && !s["d_warmup"].is_null()) o.d_warmup = option_int(s, "d_warmup", c);
     }},
    {"style_weight", nullptr, nullptr, &TrainOptions::style_weight},
    {"perceptual_weight", nullptr, nullptr, &TrainOptions::perceptual_weight},
    {"valid_weight", nullptr, nullptr, &TrainOptions::valid_weight},
    {"hole_weight", nullptr, nullptr, &TrainOptions::hole_weight},
    {"tv_weight", nullptr, nullptr, &TrainOptions::tv_weight},
    {"hole_block", [](const TrainOptions& o) -> nlohmann::json { return o.hole_block ? nlohmann::json(*o.hole_block) : nlohmann::json(); },
     [](TrainOptions& o, const nlohmann::json& s, const std::string& c) {
       if (!o.hole_block && s.contains("hole_block") && !s["hole_block"].is_null()) o.hole_block = option_int(s, "hole_block", c);
     }},
    {"ema", nullptr, nullptr, &TrainOptions::ema},
};

}  // namespace

std::string saved_options_json(const TrainOptions& opt) {
  nlohmann::json o = nlohmann::json::object();
  for (const SavedOption& option : kSavedOptions)
    if (nlohmann::json v = saved_value(option, opt); !v.is_null()) o[option.key] = std::move(v);
  return o.dump();
}

void take_back_saved_options(TrainOptions& o, const nlohmann::json& saved, const std::string& checkpoint) {
  for (const SavedOption& option : kSavedOptions) take_back(option, o, saved, checkpoint);
}

}  // namespace training
}  // namespace pconv
