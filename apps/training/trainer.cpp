#include "apps/training/trainer.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "apps/cli/cli.h"
#include "apps/inference/inference.h"
#include "apps/training/plot.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/data/imagenet.h"
#include "core/data/masks.h"
#include "core/io/safetensors.h"
#include "core/metrics/metrics.h"
#include "layers/batchnorm.h"
#include "losses/adversarial.h"

namespace pconv {

namespace fs = std::filesystem;

namespace {

double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Metadata keys of a training checkpoint (the model's config is under PConvUNet::kConfigKey).
constexpr const char* kStepKey = "train.step";
constexpr const char* kPhaseKey = "train.phase";  // "train" or "finetune"
constexpr const char* kLrKey = "train.lr";
constexpr const char* kDataStateKey = "train.data_state";
constexpr const char* kDataCountKey = "train.data_count";
constexpr const char* kOptionsKey = "train.options";

constexpr const char* kDiscConfigKey = "train.disc.config";  // present when the run has a discriminator
constexpr const char* kDiscLrKey = "train.d_lr";
// Tensor names of the discriminator and of its Adam state in a checkpoint ("optim.*" → "train.disc_optim.*").
constexpr const char* kDiscPrefix = "train.disc.";
constexpr const char* kDiscOptimPrefix = "train.disc_optim.";

constexpr const char* kLogHeader =
    "step,total,valid,hole,perceptual,style_out,style_comp,tv,lr,adv,fm,d_loss,d_real,d_fake";
constexpr const char* kValHeader = "step,loss,psnr,ssim,l1_percent,hole_detail";
// Headers of earlier versions: their rows are kept, the new columns read as 0.
constexpr const char* kLegacyLogHeader = "step,total,valid,hole,perceptual,style_out,style_comp,tv,lr";
constexpr const char* kLegacyValHeader = "step,loss,psnr,ssim,l1_percent";

std::string step_file(int64_t step, const std::string& ext) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld.%s", static_cast<long long>(step), ext.c_str());
  return buf;
}

// The step of "step-00000012.safetensors", or −1 for any other name.
int64_t checkpoint_step(const fs::path& p) {
  const std::string name = p.filename().string(), prefix = "step-", suffix = ".safetensors";
  if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return -1;
  const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  int64_t step = -1;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), step);
  if (ec != std::errc() || end != digits.data() + digits.size() || step < 0) return -1;  // "step-x", 30 digits
  return step;
}

std::string format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

std::string duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long long s = std::llround(seconds);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, s / 60 % 60);
  else std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  return buf;
}

const std::string& meta(const std::map<std::string, std::string>& m, const char* key, const std::string& path) {
  auto it = m.find(key);
  if (it == m.end())
    throw Error(path + ": not a training checkpoint of inpaint-train (no " + key + " in its metadata)");
  return it->second;
}

// A metadata value as a number; errors name the file and the key (std::stoll alone says "stoll").
[[noreturn]] void bad_meta(const std::string& path, const char* key, const std::string& text, const char* what) {
  const std::string shown = text.size() <= 40 ? text : text.substr(0, 37) + "...";
  throw Error(path + ": metadata " + key + " is '" + shown + "', not " + what);
}

int64_t meta_int(const std::map<std::string, std::string>& m, const char* key, const std::string& path) {
  const std::string& text = meta(m, key, path);
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || v < 0)
    bad_meta(path, key, text, "a non-negative integer");
  return v;
}

double meta_number(const std::map<std::string, std::string>& m, const char* key, const std::string& path) {
  const std::string& text = meta(m, key, path);
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || !std::isfinite(v))
    bad_meta(path, key, text, "a finite number");
  return v;
}

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
};

// The network's input for photos in [0,1] and masks (1 known): ImageNet space, holes 0.
struct NetBatch {
  Tensor gt, input, mask;
};
NetBatch to_network(const Tensor& images01, const Tensor& masks, Device device) {
  NetBatch b;
  b.mask = masks.to(device);
  b.gt = imagenet_normalize(images01.to(device));
  b.input = b.gt * b.mask;
  return b;
}

// "random:SEED[:SCALE]": a VGG-16 trunk at SCALE of its width with fixed random weights, the
// feature extractor of the style (and perceptual) terms without ImageNet weights.
struct RandomFeatures {
  uint64_t seed = 0;
  double scale = 0.25;
};
RandomFeatures parse_style_features(const std::string& text) {
  const std::string bad = "--style-features '" + text + "': expected random:SEED or random:SEED:SCALE (SCALE in (0, 1])";
  if (text.rfind("random:", 0) != 0) throw Error(bad);
  const std::string rest = text.substr(7);
  const size_t colon = rest.find(':');
  const std::string seed = rest.substr(0, colon);
  RandomFeatures r;
  const auto [end, ec] = std::from_chars(seed.data(), seed.data() + seed.size(), r.seed);
  if (seed.empty() || ec != std::errc() || end != seed.data() + seed.size()) throw Error(bad);
  if (colon != std::string::npos) {
    const std::string scale = rest.substr(colon + 1);
    const auto [e2, ec2] = std::from_chars(scale.data(), scale.data() + scale.size(), r.scale);
    if (scale.empty() || ec2 != std::errc() || e2 != scale.data() + scale.size() || !(r.scale > 0) || r.scale > 1)
      throw Error(bad);
  }
  return r;
}

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  for (std::string field; std::getline(ss, field, ',');) out.push_back(field);
  return out;
}

// Keeps the rows of a CSV log up to `step` (a resumed run rewrites what came after) and
// returns them as numbers. A log of an earlier version (`legacy` header, a prefix of `header`)
// keeps its rows, with 0 in the columns it did not have.
std::vector<std::vector<double>> truncate_log(const std::string& path, const char* header, const char* legacy,
                                              int64_t step) {
  std::vector<std::vector<double>> rows;
  std::ifstream in(path);
  std::string text = std::string(header) + "\n", line;
  const size_t columns = split_csv(header).size();
  if (in && std::getline(in, line) && (line == header || line == legacy)) {
    const size_t have = split_csv(line).size();
    while (std::getline(in, line)) {
      std::vector<double> row;
      try {
        for (const std::string& f : split_csv(line)) row.push_back(std::stod(f));
      } catch (const std::exception&) {
        break;  // a torn last line from a killed run
      }
      if (row.empty() || row.size() != have || row[0] > double(step)) break;
      for (size_t c = have; c < columns; ++c) row.push_back(0), line += ",0";
      rows.push_back(row);
      text += line + "\n";
    }
  }
  write_file_atomic(path, text);
  return rows;
}

void append_line(const std::string& path, const std::string& line) {
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (!f) throw Error(path + ": cannot open for appending");
  const bool ok = std::fputs((line + "\n").c_str(), f) >= 0;
  if (std::fclose(f) != 0 || !ok) throw Error(path + ": write failed (disk full?)");
}

// Removes "<name>.tmp-<pid>" files (write_file_atomic's temporaries) whose process is gone.
void remove_stale_temp_files(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const auto at = name.rfind(".tmp-");
    if (at == std::string::npos || at + 5 == name.size()) continue;
    long pid = 0;
    const auto [end, err] = std::from_chars(name.data() + at + 5, name.data() + name.size(), pid);
    if (err != std::errc() || end != name.data() + name.size() || pid <= 0) continue;
    if (pid == long(::getpid()) || (::kill(pid_t(pid), 0) == 0 || errno == EPERM)) continue;  // a live writer
    fs::remove(entry.path(), ec);
  }
}

}  // namespace

std::string vgg_missing_message() {
  return "--vgg is required: export torchvision's ImageNet VGG-16 with 'python3 scripts/export_vgg16.py "
         "vgg16_features.safetensors' (needs PyTorch) and pass --vgg vgg16_features.safetensors, or pass "
         "--vgg none to train with the pixel and TV terms only";
}

namespace {

// What out/checkpoints holds under checkpoint names, oldest first: only files, or anything.
std::vector<std::string> checkpoint_entries(const std::string& out_dir, bool files_only) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  const fs::path dir = fs::path(out_dir) / "checkpoints";
  if (fs::is_directory(dir, ec))
    for (const auto& entry : fs::directory_iterator(dir, ec))
      if (const int64_t s = checkpoint_step(entry.path()); s >= 0 && (!files_only || entry.is_regular_file(ec)))
        found.emplace_back(s, entry.path().string());
  std::sort(found.begin(), found.end());
  std::vector<std::string> paths;
  for (auto& [s, p] : found) paths.push_back(p);
  return paths;
}

}  // namespace

std::vector<std::string> list_checkpoints(const std::string& out_dir) { return checkpoint_entries(out_dir, true); }

std::string resolve_checkpoint(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(path + ": no such checkpoint");
  if (!fs::is_directory(path, ec)) return path;
  fs::path run = path;
  if (run.filename() == "checkpoints") run = run.parent_path();
  const auto all = list_checkpoints(run.string());
  if (all.empty()) throw Error(path + ": no checkpoints (checkpoints/step-*.safetensors) in this folder");
  return all.back();
}

Trainer::Trainer(TrainOptions options, Communicator& ranks) : opt_(std::move(options)), comm_(ranks) {
  // Every rank sets up alone (no communication inside), then they agree: one rank's error
  // stops all of them with its message.
  agree_on(comm_, [&] { setup(); });
  check_ranks_agree("the start",
                    "every rank must read the same --resume or --init checkpoint and the same --data photos "
                    "(a shared file system, or identical copies at the same paths)");
}

namespace {
// The run folder a --resume path belongs to: the folder given (or the one above its
// checkpoints/), or, for a file inside a run's checkpoints/, that run; "" otherwise.
std::string run_folder_of(const std::string& resume) {
  std::error_code ec;
  fs::path p = resume;
  if (!fs::is_directory(p, ec)) {
    p = p.parent_path();
    if (p.filename() != "checkpoints") return "";
  }
  if (p.filename() == "checkpoints") p = p.parent_path();
  return p.empty() ? std::string(".") : p.string();
}
}  // namespace

// What a run starts from, as setup()'s steps learn it: the --resume or --init checkpoint (none
// for a fresh model), what a resume continues, and how an --init model differs from the file's.
struct Trainer::StartingPoint {
  std::string checkpoint;                    // "" without --resume and --init
  std::map<std::string, std::string> saved;  // its metadata
  bool resuming = false;
  bool saved_finetune = false;               // resuming: the checkpoint's phase,
  double saved_lr = 0;                       // its learning rate
  DatasetState data;                         // and where its data order was
  bool init_adds_fill = false;               // --init from a model without the fill into --fill harmonic
  int64_t init_noise = 0;                    // --init: the checkpoint's noise levels (more may be added)
  bool init_changes_upsample = false;        // --init from a model with the other upsampling
};

// The steps in order: each may throw a one-line Error, and the first one wrong is the one reported.
void Trainer::setup() {
  check_required_options();
  StartingPoint start = read_starting_checkpoint();
  if (start.resuming) take_back_resumed_state(start);
  if (!start.checkpoint.empty()) match_checkpoint_model(start);
  resolve_defaults(start);
  check_texture_options();
  check_run_fits(start);
  if (writes()) prepare_out_folder(start.resuming);

  SafetensorsFile file = build_model(start);
  setup_optimizer(start, file);
  setup_discriminator(start.saved, file.tensors, start.checkpoint, start.resuming);
  file = {};  // the optimiser's copies are all that is needed now
  load_vgg();
  setup_data(start);
  if (writes()) {
    load_validation_set();
    restore_logs();
  }
  if (start.resuming) last_checkpoint_ = start.checkpoint;
}

Trainer::~Trainer() = default;

void Trainer::check_required_options() {
  // A resume of a run folder continues there, with the folders it was trained on.
  if (opt_.out_dir.empty() && !opt_.resume.empty()) opt_.out_dir = run_folder_of(opt_.resume);
  if (opt_.data_dir.empty() && opt_.resume.empty()) throw Error("--data is required (or --resume a run)");
  if (opt_.out_dir.empty())
    throw Error(opt_.resume.empty() ? "--out is required"
                                    : "--out is required: " + opt_.resume + " is not in a run's checkpoints/ folder");
  if (opt_.vgg.empty() && !opt_.style_features.empty()) opt_.vgg = "none";  // random features replace VGG
  if (opt_.vgg.empty() && opt_.resume.empty()) throw Error(vgg_missing_message());
  if (!opt_.resume.empty() && !opt_.init.empty()) throw Error("--resume and --init exclude each other");
  if (opt_.device == Device::CUDA && !cuda_available())
    throw Error("--device cuda: " + cuda_unavailable_reason());
}

// What the checkpoint says (read once for its metadata; the model loads the file itself).
Trainer::StartingPoint Trainer::read_starting_checkpoint() {
  StartingPoint start;
  start.resuming = !opt_.resume.empty();
  if (opt_.resume.empty() && opt_.init.empty()) return start;
  start.checkpoint = resolve_checkpoint(opt_.resume.empty() ? opt_.init : opt_.resume);
  const SafetensorsFile file = load_safetensors(start.checkpoint);
  start.saved = file.metadata;
  // A file that says what it is must hold it, before a model of that size is built.
  if (start.saved.count(PConvUNet::kConfigKey)) {
    PConvUNetConfig c;
    try {
      c = PConvUNet::checkpoint_config(start.saved);
    } catch (const Error& e) {
      throw Error(start.checkpoint + ": metadata " + PConvUNet::kConfigKey + ": " + e.what());
    }
    try {
      PConvUNet::check_state_shapes(c, file.tensors);
    } catch (const Error& e) {
      throw Error(start.checkpoint + ": " + e.what());
    }
  }
  return start;
}

// A resume continues the checkpoint's step, phase, learning rate, data order and saved options.
void Trainer::take_back_resumed_state(StartingPoint& start) {
  const std::string& checkpoint = start.checkpoint;
  const std::map<std::string, std::string>& saved = start.saved;
  step_ = meta_int(saved, kStepKey, checkpoint);
  const std::string& phase = meta(saved, kPhaseKey, checkpoint);
  if (phase != "train" && phase != "finetune") bad_meta(checkpoint, kPhaseKey, phase, "'train' or 'finetune'");
  start.saved_finetune = phase == "finetune";
  start.saved_lr = meta_number(saved, kLrKey, checkpoint);
  try {
    start.data = DatasetState::parse(meta(saved, kDataStateKey, checkpoint));
  } catch (const Error& e) {
    throw Error(checkpoint + ": metadata " + kDataStateKey + ": " + e.what());
  }
  const auto o = nlohmann::json::parse(meta(saved, kOptionsKey, checkpoint), nullptr, false);
  if (!o.is_object()) throw Error(checkpoint + ": metadata " + kOptionsKey + " is not a JSON object");
  // The crops, the loss and the feature network continue as they were unless the command
  // line changes them.
  for (const SavedOption& option : kSavedOptions) take_back(option, opt_, o, checkpoint);
  if (opt_.data_dir.empty()) throw Error(checkpoint + " does not say which photos it was trained on: give --data");
  if (opt_.vgg.empty() && !opt_.style_features.empty()) opt_.vgg = "none";
  if (opt_.vgg.empty()) throw Error(vgg_missing_message());
  if (opt_.seed && *opt_.seed != start.data.seed)
    throw Error("--seed " + std::to_string(*opt_.seed) + " differs from the checkpoint's " +
                std::to_string(start.data.seed) + ": a resume continues the same data order");
  opt_.seed = start.data.seed;
}

// The model's shape comes from the checkpoint unless given: a resume must keep it, an --init
// may add the fill, add noise levels or change the upsampling.
void Trainer::match_checkpoint_model(StartingPoint& start) {
  const bool resuming = start.resuming;
  const std::string& checkpoint = start.checkpoint;
  const PConvUNetConfig c = PConvUNet::checkpoint_config(start.saved);  // checked by read_starting_checkpoint
  if (opt_.levels == 0) opt_.levels = c.levels;
  if (opt_.width == 0) opt_.width = c.width;
  const std::string saved_fill = c.fill == PConvUNetConfig::Fill::Harmonic ? "harmonic" : "none";
  if (opt_.fill.empty()) opt_.fill = saved_fill;
  if (resuming && opt_.fill != saved_fill)
    throw Error("--fill " + opt_.fill + " differs from the checkpoint's (" + saved_fill +
                "): a resume continues the same model (start a new run with --init)");
  start.init_adds_fill = !resuming && opt_.fill == "harmonic" && saved_fill == "none";
  if (opt_.noise < 0) opt_.noise = c.noise;
  if (resuming && opt_.noise != c.noise)
    throw Error("--noise " + std::to_string(opt_.noise) + " differs from the checkpoint's (" +
                std::to_string(c.noise) + "): a resume continues the same model (start a new run with --init)");
  if (opt_.noise < c.noise)
    throw Error("--noise " + std::to_string(opt_.noise) + " is below " + checkpoint + "'s " + std::to_string(c.noise) +
                ": --init can add noise levels to a model, not remove them");
  start.init_noise = c.noise;
  const std::string saved_upsample = c.upsample == Upsampling::Bilinear ? "bilinear" : "nearest";
  if (opt_.upsample.empty()) opt_.upsample = saved_upsample;
  if (resuming && opt_.upsample != saved_upsample)
    throw Error("--upsample " + opt_.upsample + " differs from the checkpoint's (" + saved_upsample +
                "): a resume continues the same model (start a new run with --init)");
  start.init_changes_upsample = !resuming && opt_.upsample != saved_upsample;
}

// Every option still unset gets its default; the model's and the optimiser's are checked.
void Trainer::resolve_defaults(const StartingPoint& start) {
  if (opt_.upsample.empty()) opt_.upsample = "nearest";
  if (opt_.upsample != "nearest" && opt_.upsample != "bilinear")
    throw Error("--upsample " + opt_.upsample + ": expected nearest or bilinear");
  if (opt_.upsample == "bilinear" && opt_.device != Device::CPU)
    throw Error("--upsample bilinear runs on the CPU only so far (no GPU has run its kernel)");
  if (!(opt_.noise_strength >= 0) || !std::isfinite(opt_.noise_strength))
    throw Error("--noise-strength must be a finite number ≥ 0");
  if (opt_.fill.empty()) opt_.fill = "none";
  if (opt_.noise < 0) opt_.noise = 0;
  opt_.finetune = opt_.finetune || start.saved_finetune;
  if (opt_.size == 0) opt_.size = 256;
  if (opt_.batch == 0) opt_.batch = 6;
  if (opt_.levels == 0) opt_.levels = std::max<int64_t>(1, int64_t(std::lround(std::log2(double(opt_.size)))) - 1);
  if (opt_.width == 0) opt_.width = 64;
  if (opt_.steps == 0) opt_.steps = 1000;
  if (!opt_.seed) opt_.seed = 0;
  // A resume keeps its learning rate unless it switches to the fine-tune phase here.
  if (opt_.lr == 0)
    opt_.lr = start.resuming && opt_.finetune == start.saved_finetune ? start.saved_lr : opt_.finetune ? 5e-5 : 2e-4;
  if (opt_.size < 16) throw Error("--size " + std::to_string(opt_.size) + " is too small (at least 16)");
  if (opt_.batch < 1 || opt_.steps < 1 || opt_.save_every < 1 || opt_.keep < 1 || opt_.val_every < 1 ||
      opt_.sample_every < 1 || opt_.log_every < 1 || opt_.val_count < 0)
    throw Error("--batch, --steps, --save-every, --keep, --val-every, --sample-every, --log-every must be positive");
  if (!(opt_.lr > 0) || !std::isfinite(opt_.lr)) throw Error("--lr must be a positive number");
}

// The texture terms: their weights, the GAN loss and the random style features.
void Trainer::check_texture_options() {
  if (!opt_.adversarial) opt_.adversarial = 0.0;
  if (!opt_.feature_matching) opt_.feature_matching = 0.0;
  for (const auto& [name, value] : {std::pair{"--adversarial", *opt_.adversarial},
                                    {"--feature-matching", *opt_.feature_matching},
                                    {"--style-weight", opt_.style_weight.value_or(0)},
                                    {"--perceptual-weight", opt_.perceptual_weight.value_or(0)},
                                    {"--valid-weight", opt_.valid_weight.value_or(0)},
                                    {"--hole-weight", opt_.hole_weight.value_or(0)},
                                    {"--tv-weight", opt_.tv_weight.value_or(0)},
                                    {"--d-lr", opt_.d_lr}})
    if (!(value >= 0) || !std::isfinite(value)) throw Error(std::string(name) + " must be a finite number ≥ 0");
  if (opt_.d_warmup && *opt_.d_warmup < 0) throw Error("--d-warmup must be ≥ 0");
  if (opt_.gan_loss.empty()) opt_.gan_loss = "hinge";
  try {
    gan_ = parse_gan_loss(opt_.gan_loss);
  } catch (const Error& e) {
    throw Error(std::string("--gan-loss: ") + e.what());
  }
  if (!opt_.style_features.empty()) {
    parse_style_features(opt_.style_features);  // a one-line error before anything is written
    if (opt_.vgg != "none")
      throw Error("--style-features " + opt_.style_features + " replaces --vgg's network: leave out --vgg " + opt_.vgg);
  }
}

// A resume has steps left to train, and the batch splits evenly over the ranks.
void Trainer::check_run_fits(const StartingPoint& start) {
  if (start.resuming && step_ >= opt_.steps)
    throw Error(start.checkpoint + " is at step " + std::to_string(step_) + ", --steps is " +
                std::to_string(opt_.steps) + ": nothing to do (raise --steps)");
  if (opt_.batch % comm_.size() != 0)
    throw Error("--batch " + std::to_string(opt_.batch) + " is not a multiple of the " + std::to_string(comm_.size()) +
                " ranks: every rank takes an equal share of each batch");
}

// The UNet of the resolved options, with the checkpoint's weights, in training mode. Returns the
// checkpoint's file (empty for a fresh model): its optimiser and discriminator state come next.
SafetensorsFile Trainer::build_model(const StartingPoint& start) {
  PConvUNetConfig config;
  config.levels = opt_.levels, config.width = opt_.width;
  config.fill = opt_.fill == "harmonic" ? PConvUNetConfig::Fill::Harmonic : PConvUNetConfig::Fill::None;
  config.noise = opt_.noise;
  config.upsample = opt_.upsample == "bilinear" ? Upsampling::Bilinear : Upsampling::Nearest;
  try {
    config.validate();
  } catch (const Error& e) {
    throw Error("--noise " + std::to_string(opt_.noise) + ": at most --levels − 1 (" + std::to_string(opt_.levels - 1) +
                ") decoder levels");
  }
  model_ = std::make_unique<PConvUNet>(config, *opt_.seed, DType::F32, opt_.device);
  SafetensorsFile file;
  const bool init_adds_noise = !start.resuming && !start.checkpoint.empty() && opt_.noise > start.init_noise;
  if (start.init_adds_fill || init_adds_noise || start.init_changes_upsample)
    file = load_init_into_other_model(start, config, init_adds_noise);
  else if (!start.checkpoint.empty())
    file = model_->load_checkpoint(start.checkpoint);
  model_->train();
  model_->set_finetune(opt_.finetune);
  // Synchronised BatchNorm: N ranks normalise as one process with their batches together.
  if (comm_.size() > 1)
    for (const auto& [name, module] : model_->named_modules())
      if (auto* bn = dynamic_cast<BatchNorm2d*>(module)) bn->set_sync(&comm_);
  return file;
}

// --init into a model that differs from the file's. The weights of a model without the fill,
// its last layer zeroed: the new model starts exactly at the harmonic fill and learns what to
// add, keeping the trained features. New noise strengths start at --noise-strength (0: the
// model starts exactly where the file was). Another upsampling keeps every weight (the shapes
// are the same).
SafetensorsFile Trainer::load_init_into_other_model(const StartingPoint& start, const PConvUNetConfig& config,
                                                    bool init_adds_noise) {
  const std::string& checkpoint = start.checkpoint;
  SafetensorsFile file = load_safetensors(checkpoint);
  std::map<std::string, Tensor> weights;
  for (auto& [name, t] : file.tensors)
    if (!PConvUNet::is_training_state_key(name)) weights.emplace(name, t);
  const std::string last = "pconv" + std::to_string(model_->layer_count());
  if (start.init_adds_fill)
    for (const char* p : {".weight", ".bias"}) {
      auto it = weights.find(last + p);
      if (it != weights.end()) it->second = Tensor::zeros(it->second.shape(), it->second.dtype());
    }
  for (const auto& [name, shape] : config.state_shapes())
    if (name.size() > 6 && name.compare(name.size() - 6, 6, ".noise") == 0 && !weights.count(name))
      weights[name] = Tensor::full(shape, opt_.noise_strength);
  try {
    model_->load_state_dict(weights, true);
  } catch (const Error& e) {
    throw Error(checkpoint + ": " + e.what());
  }
  if (!writes() || opt_.quiet) return file;
  if (start.init_adds_fill)
    cli::progress("inpaint-train: --fill harmonic from " + checkpoint + ": its weights, " + last +
                  " zeroed, so training starts at the harmonic fill");
  if (init_adds_noise)
    cli::progress("inpaint-train: --noise " + std::to_string(opt_.noise) + " from " + checkpoint +
                  (opt_.noise_strength > 0 ? ": new noise strengths start at " + format("%g", opt_.noise_strength)
                                           : std::string(": new noise strengths start at 0, so training starts at its output")));
  if (start.init_changes_upsample)
    cli::progress("inpaint-train: --upsample " + opt_.upsample + " from " + checkpoint +
                  ": its weights, with the other upsampling (training starts near its output)");
  return file;
}

// Adam over the generator's parameters; a resume takes its moments back from the checkpoint.
void Trainer::setup_optimizer(const StartingPoint& start, const SafetensorsFile& file) {
  adam_ = std::make_unique<Adam>(model_->named_parameters(), AdamOptions{opt_.lr});
  if (!start.resuming) return;
  try {
    adam_->load_state_dict(file.tensors);
  } catch (const Error& e) {
    throw Error(start.checkpoint + ": " + e.what());
  }
}

// The photo loader: this rank's share of each batch, from the checkpoint's place in the data
// order when resuming.
void Trainer::setup_data(const StartingPoint& start) {
  DatasetOptions d;
  d.image_dir = opt_.data_dir, d.mask_dir = opt_.mask_dir, d.mask_holes = opt_.mask_holes;
  d.size = opt_.size, d.batch = opt_.batch, d.seed = *opt_.seed;
  // The defaults are this machine's share: its ranks split its memory and cores.
  const int64_t local_ranks = launched_local_size();
  d.cache_bytes = opt_.cache_gib >= 0
                      ? int64_t(opt_.cache_gib * double(int64_t(1) << 30))
                      : std::clamp<int64_t>(inference::available_memory_bytes() / 4, 0, int64_t(8) << 30) / local_ranks;
  d.workers = int(opt_.workers > 0 ? opt_.workers
                  : opt_.device == Device::CPU
                      ? 1
                      : std::clamp<int64_t>(int64_t(std::thread::hardware_concurrency()) / local_ranks, 1, 8));
  d.shard = comm_.rank(), d.shards = comm_.size();
  data_ = std::make_unique<TrainingData>(d, start.resuming ? start.data : DatasetState{*opt_.seed, 0, 0});
  if (writes() && start.resuming && start.saved.count(kDataCountKey) &&
      meta_int(start.saved, kDataCountKey, start.checkpoint) != data_->samples_per_epoch())
    warn("the checkpoint was trained on " + start.saved.at(kDataCountKey) + " photos, --data holds " +
         std::to_string(data_->samples_per_epoch()) + ": the data order differs from the original run");
}

void Trainer::load_vgg() {
  LossWeights w;
  if (opt_.vgg != "none") {
    VGG16Options v;
    v.device = opt_.device;
    vgg_ = std::make_shared<VGG16Features>(v);
    vgg_->load_torchvision(opt_.vgg);
  } else if (!opt_.style_features.empty()) {
    // Random filters capture texture statistics (Ustyuzhaninov et al. 2017): Gram matrices of
    // a frozen random trunk stand in for ImageNet VGG's. Its perceptual term compares random
    // projections of the pixels, which the pixel loss already does better: 0 unless asked.
    const RandomFeatures r = parse_style_features(opt_.style_features);
    VGG16Options v;
    v.width_scale = r.scale, v.seed = r.seed, v.device = opt_.device;
    vgg_ = std::make_shared<VGG16Features>(v);
    w.perceptual = 0;
  }
  if (opt_.style_weight) w.style = *opt_.style_weight;
  if (opt_.perceptual_weight) w.perceptual = *opt_.perceptual_weight;
  if (opt_.valid_weight) w.valid = *opt_.valid_weight;
  if (opt_.hole_weight) w.hole = *opt_.hole_weight;
  if (opt_.tv_weight) w.tv = *opt_.tv_weight;
  loss_ = std::make_unique<InpaintingLoss>(vgg_, w);
}

void Trainer::setup_discriminator(const std::map<std::string, std::string>& saved,
                                  const std::map<std::string, Tensor>& tensors, const std::string& checkpoint,
                                  bool resuming) {
  const bool wanted = *opt_.adversarial > 0 || *opt_.feature_matching > 0;
  const bool saved_disc = resuming && saved.count(kDiscConfigKey) > 0;
  if (!wanted) {
    if (opt_.d_width || opt_.d_layers || opt_.d_lr > 0 || opt_.d_warmup.value_or(0) > 0 || !opt_.d_target.empty())
      throw Error("--d-width, --d-layers, --d-lr, --d-target and --d-warmup need a discriminator: give --adversarial "
                  "or --feature-matching");
    return;
  }
  if (opt_.d_target.empty()) opt_.d_target = "composite";
  if (opt_.d_target != "composite" && opt_.d_target != "hole")
    throw Error("--d-target '" + opt_.d_target + "': expected composite or hole");
  const int64_t in_channels = opt_.d_target == "hole" ? 3 : 4;  // the hole target: no mask channel
  PatchDiscriminatorConfig c;
  if (saved_disc) {
    try {
      c = PatchDiscriminatorConfig::from_json(saved.at(kDiscConfigKey));
    } catch (const Error& e) {
      throw Error(checkpoint + ": metadata " + kDiscConfigKey + ": " + e.what());
    }
    if ((opt_.d_width && opt_.d_width != c.width) || (opt_.d_layers && opt_.d_layers != c.layers))
      throw Error("--d-width/--d-layers differ from the checkpoint's discriminator (width " + std::to_string(c.width) +
                  ", " + std::to_string(c.layers) + " layers): a resume continues the same discriminator");
    if (c.in_channels != in_channels)
      throw Error("--d-target " + opt_.d_target + " differs from the checkpoint's discriminator (it " +
                  (c.in_channels == 3 ? "finds the hole" : "sees the mask") +
                  "): a resume continues the same discriminator");
  } else {
    c.in_channels = in_channels;
    c.width = opt_.d_width ? opt_.d_width : 32;
    c.layers = opt_.d_layers ? opt_.d_layers : 3;
    try {
      c.validate();
    } catch (const Error& e) {
      throw Error(std::string("--d-width/--d-layers: ") + e.what());
    }
  }
  const int64_t min_side = (int64_t(1) << c.layers) * 4;
  if (opt_.size < min_side)
    throw Error("--size " + std::to_string(opt_.size) + " is too small for a discriminator of " +
                std::to_string(c.layers) + " strided layers (at least " + std::to_string(min_side) + ")");
  opt_.d_width = c.width, opt_.d_layers = c.layers;
  if (opt_.d_lr == 0)
    opt_.d_lr = saved_disc && saved.count(kDiscLrKey) ? meta_number(saved, kDiscLrKey, checkpoint) : 4 * opt_.lr;
  // Its own seed stream, so adding a discriminator leaves the generator's initial weights as they were.
  disc_ = std::make_unique<PatchDiscriminator>(c, *opt_.seed ^ 0x9e3779b97f4a7c15ULL, DType::F32, opt_.device);
  // β1 0.5 as GAN discriminators are usually trained (DCGAN): less momentum against a moving target.
  d_adam_ = std::make_unique<Adam>(disc_->named_parameters(), AdamOptions{opt_.d_lr, 0.5, 0.999});
  if (saved_disc) {
    std::map<std::string, Tensor> weights, state;
    const std::string dp = kDiscPrefix, op = kDiscOptimPrefix;
    for (const auto& [name, t] : tensors) {
      if (name.rfind(dp, 0) == 0) weights.emplace(name.substr(dp.size()), t);
      if (name.rfind(op, 0) == 0) state.emplace("optim." + name.substr(op.size()), t);
    }
    try {
      disc_->load_state_dict(weights, true);
      d_adam_->load_state_dict(state);
    } catch (const Error& e) {
      throw Error(checkpoint + ": discriminator: " + e.what());
    }
  } else if (resuming && writes() && !opt_.quiet) {
    cli::progress("inpaint-train: the checkpoint has no discriminator: a fresh one starts here");
  }
}

void Trainer::prepare_out_folder(bool resuming) {
  cli::ensure_folder(opt_.out_dir);
  cli::ensure_folder((fs::path(opt_.out_dir) / "checkpoints").string());
  cli::ensure_folder((fs::path(opt_.out_dir) / "samples").string());
  // A run killed while writing leaves "<file>.tmp-<pid>" behind (the file itself is intact).
  for (const char* sub : {"", "checkpoints", "samples"}) remove_stale_temp_files((fs::path(opt_.out_dir) / sub).string());
  // Fail now, not after an hour of training, when nothing can be written there.
  const std::string probe = (fs::path(opt_.out_dir) / ".write-test").string();
  try {
    write_file_atomic(probe, "ok\n");
  } catch (const Error&) {
    throw Error(opt_.out_dir + ": cannot write in this folder");
  }
  std::error_code ec;
  fs::remove(probe, ec);
  if (!resuming && !list_checkpoints(opt_.out_dir).empty())
    throw Error(opt_.out_dir + " holds checkpoints of an earlier run: continue it with --resume " + opt_.out_dir +
                ", or choose another --out");
}

void Trainer::load_validation_set() {
  if (!opt_.val_dir.empty()) {
    val_ = make_validation_set(opt_.val_dir, opt_.size, *opt_.seed);
  } else {
    // Without held-out photos, the first samples of epoch 0 serve as the fixed set.
    const int64_t n = std::min(opt_.val_count > 0 ? opt_.val_count : 8, data_->samples_per_epoch());
    for (int64_t i = 0; i < n; ++i) {
      ValidationSample s;
      s.name = "train-" + std::to_string(i);
      data_->sample(0, i, s.image, s.mask);
      val_.push_back(std::move(s));
    }
  }
  if (opt_.val_count > 0 && int64_t(val_.size()) > opt_.val_count) val_.resize(size_t(opt_.val_count));
}

void Trainer::restore_logs() {
  const std::string log = (fs::path(opt_.out_dir) / "log.csv").string();
  const std::string val = (fs::path(opt_.out_dir) / "val.csv").string();
  for (const auto& r : truncate_log(log, kLogHeader, kLegacyLogHeader, step_))
    if (r.size() >= 14)
      history_.push_back({int64_t(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[9], r[10], r[11], r[12], r[13]});
  for (const auto& r : truncate_log(val, kValHeader, kLegacyValHeader, step_))
    if (r.size() >= 6) val_history_.push_back({int64_t(r[0]), r[1], r[2], r[3], r[4], r[5]});
}

void Trainer::append_log(const StepLosses& s) {
  char buf[512];
  std::snprintf(buf, sizeof buf, "%lld,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g",
                static_cast<long long>(s.step), s.total, s.valid, s.hole, s.perceptual, s.style_out, s.style_comp, s.tv,
                adam_->lr(), s.adv, s.fm, s.d_loss, s.d_real, s.d_fake);
  append_line((fs::path(opt_.out_dir) / "log.csv").string(), buf);
}

StepLosses Trainer::train_step() {
  const Batch batch = data_->next();
  const double cpu_start = cpu_seconds();
  double disc_cpu = 0;
  const NetBatch b = to_network(batch.images, batch.masks, opt_.device);
  if (disc_) disc_->power_iterate();  // once per step: every pass of this step uses the same σ
  // Fresh noise every step and rank, the same on a resume; validation and samples draw with
  // seed 0, as inference does.
  model_->set_noise_seed(mix_seed(*opt_.seed, uint64_t(step_), uint64_t(comm_.rank()) + 1));
  const Tensor out = model_->forward(b.input, b.mask);
  model_->set_noise_seed(0);
  const LossTerms t = loss_->compute(out, b.gt, b.mask);
  Tensor total = t.total, adv = Tensor::zeros({}, out.dtype(), out.device()), fm = adv, comp;
  DiscriminatorOutput real;
  if (disc_) {
    // The truth's scores with a graph into the discriminator only: its step below reuses them
    // (its weights do not change before then). The composite's with a graph into the
    // generator only: the discriminator is frozen for that pass.
    const double d_start = cpu_seconds();
    real = disc_->forward(b.gt, b.mask);
    comp = composite(out, b.gt, b.mask);
    disc_->freeze(true);
    const DiscriminatorOutput fake = disc_->forward(comp, b.mask);
    disc_->freeze(false);
    disc_cpu += cpu_seconds() - d_start;
    adv = generator_adversarial_loss(fake.scores, gan_);
    fm = feature_matching_loss(fake.features, real.features);
    // During the discriminator's warm-up the generator leaves these terms out (logged all the same).
    if (step_ >= opt_.d_warmup.value_or(0)) total = total + adv * *opt_.adversarial + fm * *opt_.feature_matching;
  }

  StepLosses s;
  s.step = step_ + 1;
  const std::pair<const char*, double*> terms[] = {
      {"valid", &s.valid}, {"hole", &s.hole}, {"perceptual", &s.perceptual}, {"style_out", &s.style_out},
      {"style_comp", &s.style_comp}, {"tv", &s.tv}, {"total", &s.total}, {"adversarial", &s.adv},
      {"feature-matching", &s.fm}};
  constexpr size_t kTerms = 9;
  const Tensor* tensors[kTerms] = {&t.valid, &t.hole, &t.perceptual, &t.style_out, &t.style_comp, &t.tv, &total,
                                   &adv, &fm};
  double values[kTerms];
  for (size_t i = 0; i < kTerms; ++i) values[i] = tensors[i]->item();
  if (comm_.size() > 1) {
    // Each term is a mean over equal shares: their mean is the whole batch's loss (and a
    // NaN on one rank reaches all, so all stop together).
    comm_.allreduce_sum(values, kTerms);
    for (double& v : values) v /= double(comm_.size());
  }
  for (size_t i = 0; i < kTerms; ++i) {
    *terms[i].second = values[i];
    if (!std::isfinite(*terms[i].second))
      throw DivergenceError("step " + std::to_string(s.step) + ": the " + terms[i].first + " loss is " +
                                format("%g", *terms[i].second) + "; stopped without saving" +
                                (last_checkpoint_.empty() ? std::string(" (no checkpoint yet)")
                                                          : " (last good checkpoint: " + last_checkpoint_ + ")"),
                            comm_.rank());
  }
  adam_->zero_grad();
  total.backward();
  average_gradients(*model_);
  adam_->step();
  if (disc_) {
    const double d_start = cpu_seconds();
    discriminator_step(real.scores, comp.detach(), b.mask, s);
    disc_cpu += cpu_seconds() - d_start;
  }
  window_cpu_ += cpu_seconds() - cpu_start, window_disc_cpu_ += disc_cpu;
  ++step_;
  history_.push_back(s);
  if (writes()) append_log(s);
  if (after_step) after_step(*this);
  return s;
}

// The discriminator's update on the same batch: the truth against the composite the generator
// made before its update (detached: no gradient reaches the generator).
void Trainer::discriminator_step(const Tensor& real_scores, const Tensor& composite, const Tensor& mask,
                                 StepLosses& s) {
  const DiscriminatorOutput fake = disc_->forward(composite, mask);
  // With the hole target, the composite's mean score is taken over its hole patches alone (the
  // others are truth): the figure the "wins outright" check and gan.png compare with the truth's.
  const Tensor target =
      opt_.d_target == "hole" ? disc_->hole_fraction(mask, fake.scores.shape(), fake.scores.dtype()) : Tensor();
  const Tensor d_loss = discriminator_loss(real_scores, fake.scores, gan_, target);
  const double fake_mean = target.defined() ? sum(fake.scores * target).item() / std::max(sum(target).item(), 1e-12)
                                            : mean(fake.scores).item();
  double values[3] = {d_loss.item(), mean(real_scores).item(), fake_mean};
  if (comm_.size() > 1) {
    comm_.allreduce_sum(values, 3);
    for (double& v : values) v /= double(comm_.size());
  }
  s.d_loss = values[0], s.d_real = values[1], s.d_fake = values[2];
  if (!std::isfinite(s.d_loss))
    throw DivergenceError("step " + std::to_string(s.step) + ": the discriminator's loss is " + format("%g", s.d_loss) +
                              "; stopped without saving" +
                              (last_checkpoint_.empty() ? std::string(" (no checkpoint yet)")
                                                        : " (last good checkpoint: " + last_checkpoint_ + ")"),
                          comm_.rank());
  d_adam_->zero_grad();
  d_loss.backward();
  average_gradients(*disc_);
  d_adam_->step();
}

// A discriminator that wins outright (its loss near 0: every truth patch scored real and every
// composite patch fake with margin) gives the generator little to learn from; say so, at most
// every 500 steps.
void Trainer::warn_if_discriminator_wins() {
  if (!disc_ || history_.size() < 50 || (last_win_warning_ >= 0 && step_ - last_win_warning_ < 500)) return;
  double loss = 0, real = 0, fake = 0;
  for (size_t i = history_.size() - 50; i < history_.size(); ++i)
    loss += history_[i].d_loss / 50, real += history_[i].d_real / 50, fake += history_[i].d_fake / 50;
  const double chance = gan_ == GanLoss::Hinge ? 2.0 : 2 * std::log(2.0);  // loss when D cannot tell
  if (loss > 0.05 * chance) return;
  last_win_warning_ = step_;
  warn("the discriminator wins outright (loss " + format("%.3g", loss) + ", mean score " + format("%.2f", real) +
       " for the truth, " + format("%.2f", fake) +
       " for the composite, over the last 50 steps): the composite's scores saturate and the "
       "generator learns little from them; lower --d-lr or raise --adversarial");
}

ValidationResult Trainer::validate() {
  ValidationResult r;
  r.step = step_;
  if (!writes() || val_.empty()) return r;
  model_->eval();
  NoGradGuard no_grad;
  const size_t chunk = size_t(opt_.batch);
  std::vector<double> details;
  for (size_t first = 0; first < val_.size(); first += chunk) {
    const size_t n = std::min(chunk, val_.size() - first);
    std::vector<Tensor> images;
    std::vector<MaskImage> masks;
    for (size_t i = first; i < first + n; ++i) {
      images.push_back(val_[i].image.reshape({1, 3, val_[i].image.size(1), val_[i].image.size(2)}));
      masks.push_back(val_[i].mask);
    }
    const NetBatch b = to_network(concat(images, 0), masks_to_batch(masks), opt_.device);
    const Tensor out = model_->forward(b.input, b.mask);
    r.loss += loss_->compute(out, b.gt, b.mask).total.item() * double(n);
    // Scored as users get it: clamped to [0,1] (saving clamps), known pixels composited.
    const Tensor result = clamp01(imagenet_denormalize(out)).to(Device::CPU);
    for (size_t i = 0; i < n; ++i) {
      const ValidationSample& v = val_[first + i];
      const Tensor one = slice(result, 0, int64_t(i), int64_t(i) + 1).reshape(v.image.shape());
      const ImageMetrics m = evaluate_image(v.name, one, v.image, v.mask);
      r.psnr += m.psnr, r.ssim += m.ssim, r.l1_percent += m.l1_percent;
      if (std::isfinite(m.hole_detail)) details.push_back(m.hole_detail);
    }
  }
  model_->train();
  const double count = double(val_.size());
  r.loss /= count, r.psnr /= count, r.ssim /= count, r.l1_percent /= count;
  // The median, as inpaint-eval reports hole detail (NaN when no pair has a hole to measure).
  std::sort(details.begin(), details.end());
  r.hole_detail = details.empty() ? std::nan("")
                  : details.size() % 2 ? details[details.size() / 2]
                                       : (details[details.size() / 2 - 1] + details[details.size() / 2]) / 2;
  char buf[200];
  std::snprintf(buf, sizeof buf, "%lld,%.9g,%.9g,%.9g,%.9g,%.9g", static_cast<long long>(r.step), r.loss, r.psnr,
                r.ssim, r.l1_percent, r.hole_detail);
  append_line((fs::path(opt_.out_dir) / "val.csv").string(), buf);
  val_history_.push_back(r);
  return r;
}

void Trainer::write_samples() {
  if (!writes() || val_.empty()) return;
  model_->eval();
  NoGradGuard no_grad;
  std::vector<SampleRow> rows;
  for (size_t i = 0; i < val_.size() && i < 4; ++i) {
    const ValidationSample& v = val_[i];
    const Shape nchw{1, 3, v.image.size(1), v.image.size(2)};
    const NetBatch b = to_network(v.image.reshape(nchw), mask_to_tensor(v.mask), opt_.device);
    SampleRow row;
    row.ground_truth = v.image;
    row.output = imagenet_denormalize(model_->forward(b.input, b.mask)).to(Device::CPU).reshape(v.image.shape());
    row.composite = composite(row.output, v.image, v.mask);
    row.mask = v.mask;
    rows.push_back(std::move(row));
  }
  model_->train();
  save_image((fs::path(opt_.out_dir) / "samples" / step_file(step_, "png")).string(), sample_grid(rows));
}

void Trainer::write_loss_plot() {
  if (!writes()) return;
  const char* names[] = {"total", "valid", "hole", "perceptual", "style_out", "style_comp", "tv", "fm", "d loss"};
  std::vector<Curve> curves;
  for (size_t k = 0; k < 9; ++k) {
    Curve c;
    c.name = names[k];
    c.color = curve_color(curves.size());
    for (const StepLosses& s : history_) {
      const double v[] = {s.total, s.valid, s.hole, s.perceptual, s.style_out, s.style_comp, s.tv, s.fm, s.d_loss};
      c.x.push_back(double(s.step)), c.y.push_back(v[k]);
    }
    // Without VGG the perceptual and style terms are 0 throughout: no line, no legend entry.
    if (std::any_of(c.y.begin(), c.y.end(), [](double y) { return y > 0; })) curves.push_back(std::move(c));
  }
  Curve val{"val loss", {}, {}, curve_color(8)};
  for (const ValidationResult& r : val_history_) val.x.push_back(double(r.step)), val.y.push_back(r.loss);
  if (!val.x.empty()) curves.push_back(std::move(val));
  PlotOptions o;
  o.smooth = 6;
  o.title = "inpaint-train: total (weighted) and unweighted loss terms, log scale, step " + std::to_string(step_);
  save_image((fs::path(opt_.out_dir) / "loss.png").string(), plot_curves(curves, o));
  if (!disc_) return;
  // The game itself on a linear scale (scores and the generator's hinge loss go negative).
  std::vector<Curve> game;
  const char* game_names[] = {"d loss", "score of truth", "score of composite", "adv"};
  for (size_t k = 0; k < 4; ++k) {
    Curve c;
    c.name = game_names[k];
    c.color = curve_color(k);
    for (const StepLosses& s : history_) {
      if (s.d_loss == 0 && s.d_real == 0 && s.d_fake == 0) continue;  // steps without a discriminator
      const double v[] = {s.d_loss, s.d_real, s.d_fake, s.adv};
      c.x.push_back(double(s.step)), c.y.push_back(v[k]);
    }
    game.push_back(std::move(c));
  }
  PlotOptions g;
  g.smooth = 6, g.log_y = false;
  g.title = "inpaint-train: discriminator loss and mean patch scores, step " + std::to_string(step_);
  save_image((fs::path(opt_.out_dir) / "gan.png").string(), plot_curves(game, g));
}

void Trainer::check_parameters_finite() const {
  for (const auto& [name, t] : model_->state_dict())
    for (float v : t.to_float_vector())
      if (!std::isfinite(v))
        throw DivergenceError("step " + std::to_string(step_) + ": " + name +
                                  " became non-finite in the update; stopped without saving" +
                                  (last_checkpoint_.empty() ? std::string()
                                                            : " (last good checkpoint: " + last_checkpoint_ + ")"),
                              comm_.rank());
}

std::string Trainer::saved_options() const {
  nlohmann::json o = nlohmann::json::object();
  for (const SavedOption& option : kSavedOptions)
    if (nlohmann::json v = saved_value(option, opt_); !v.is_null()) o[option.key] = std::move(v);
  return o.dump();
}

std::string Trainer::save_checkpoint() {
  check_ranks_agree("step " + std::to_string(step_),
                    "their all-reductions gave them different values; stopped without saving" +
                        (last_checkpoint_.empty() ? std::string() : " (last good checkpoint: " + last_checkpoint_ + ")"));
  check_parameters_finite();
  const std::string path = (fs::path(opt_.out_dir) / "checkpoints" / step_file(step_, "safetensors")).string();
  if (!writes()) {
    last_checkpoint_ = path, saved_step_ = step_;  // rank 0 writes it
    return path;
  }
  std::map<std::string, std::string> m = {
      {kStepKey, std::to_string(step_)},
      {kPhaseKey, opt_.finetune ? "finetune" : "train"},
      {kLrKey, format("%.17g", adam_->lr())},
      {kDataStateKey, data_->state().to_string()},
      {kDataCountKey, std::to_string(data_->samples_per_epoch())},
      {kOptionsKey, saved_options()},
  };
  std::map<std::string, Tensor> extra = adam_->state_dict();
  if (disc_) {
    m[kDiscConfigKey] = disc_->config().to_json();
    m[kDiscLrKey] = format("%.17g", d_adam_->lr());
    for (const auto& [name, t] : disc_->state_dict()) extra[kDiscPrefix + name] = t;
    for (const auto& [name, t] : d_adam_->state_dict()) extra[kDiscOptimPrefix + name.substr(6)] = t;  // "optim."
  }
  model_->save_checkpoint(path, m, extra);
  last_checkpoint_ = path;
  saved_step_ = step_;
  prune_checkpoints();  // only after the new file is safely in place
  write_loss_plot();
  return path;
}

void Trainer::prune_checkpoints() {
  // Whatever holds an old checkpoint's name goes, so that something else there (a folder) is
  // reported rather than silently kept; a removal that fails leaves the disk filling up.
  const std::vector<std::string> all = checkpoint_entries(opt_.out_dir, false);
  for (size_t i = 0; i + size_t(opt_.keep) < all.size(); ++i) {
    std::error_code ec;
    if (fs::remove(all[i], ec) || !ec) continue;
    if (unremovable_.insert(all[i]).second)
      warn("cannot remove the old checkpoint " + all[i] + " (" + ec.message() + "); it stays and takes space");
  }
}

void Trainer::warn(const std::string& message) {
  warnings_.push_back(message);
  if (writes() && !opt_.quiet) cli::progress("inpaint-train: warning: " + message);
}

int64_t Trainer::run(const std::atomic<bool>* stop) {
  using clock = std::chrono::steady_clock;
  const bool talk = !opt_.quiet && writes();
  auto say = [&](const std::string& line) {
    if (talk) cli::progress(line);
  };
  say("inpaint-train: " + model_->config().describe() + " (" + std::to_string(model_->parameter_count()) +
      " parameters), " + std::to_string(data_->samples_per_epoch()) + " photos, " + std::to_string(opt_.size) +
      "×" + std::to_string(opt_.size) + " crops, batch " + std::to_string(opt_.batch) +
      (comm_.size() > 1 ? " over " + comm_.describe() + " (" + std::to_string(opt_.batch / comm_.size()) +
                              " each, synchronised BatchNorm)"
                        : std::string()) +
      ", lr " +
      format("%g", opt_.lr) + (opt_.finetune ? ", fine-tune phase" : "") +
      (!opt_.style_features.empty() ? ", style on random features (" + opt_.style_features + ")"
       : vgg_                       ? ""
                                    : ", no VGG (pixel and TV terms only)") +
      (disc_ ? ", " + disc_->config().describe() + (opt_.d_target == "hole" ? " finding the hole" : "") + ", " +
                   opt_.gan_loss + " loss ×" + format("%g", *opt_.adversarial) +
                   ", feature matching ×" + format("%g", *opt_.feature_matching) + ", d-lr " + format("%g", opt_.d_lr) +
                   (opt_.d_warmup.value_or(0) > step_
                        ? ", the discriminator alone until step " + std::to_string(*opt_.d_warmup)
                        : std::string())
             : std::string()) +
      ", from step " + std::to_string(step_) + " to " +
      std::to_string(opt_.steps));
  if (step_ == 0) {
    const ValidationResult v = validate();
    write_samples();
    if (!val_.empty())
      say("step 0: val loss " + format("%.4g", v.loss) + "  PSNR " + format("%.2f", v.psnr) + "  SSIM " +
          format("%.3f", v.ssim) + "  l1 " + format("%.2f", v.l1_percent) + "%  hole detail " +
          format("%.2f", v.hole_detail));
  }
  auto window_start = clock::now();
  const auto run_start = window_start;
  auto out_of_time = [&] {
    return opt_.time_limit > 0 && std::chrono::duration<double>(clock::now() - run_start).count() >= opt_.time_limit;
  };
  int64_t window_steps = 0;
  bool timed_out = false;
  while (step_ < opt_.steps) {
    // [stop requested, out of time]; with several ranks, on any of them: a signal may reach
    // one rank only, or the ranks in different steps, and all must stop at the same step.
    double flags[2] = {stop && stop->load() ? 1.0 : 0.0, out_of_time() ? 1.0 : 0.0};
    comm_.allreduce_sum(flags, 2);
    if (flags[0] > 0) break;
    if ((timed_out = flags[1] > 0)) break;
    const StepLosses s = train_step();
    ++window_steps;
    if (step_ % opt_.log_every == 0 || step_ == opt_.steps) {
      const double seconds = std::chrono::duration<double>(clock::now() - window_start).count();
      images_per_second_ = seconds > 0 ? double(window_steps * opt_.batch) / seconds : 0;
      window_start = clock::now(), window_steps = 0;
      const double eta = double((opt_.steps - step_) * opt_.batch) / std::max(images_per_second_, 1e-9);
      say("step " + std::to_string(step_) + "/" + std::to_string(opt_.steps) + "  total " + format("%.4f", s.total) +
          "  valid " + format("%.4f", s.valid) + "  hole " + format("%.4f", s.hole) +
          (vgg_ ? "  perc " + format("%.4f", s.perceptual) + "  style " + format("%.4g", s.style_out) + "/" +
                      format("%.4g", s.style_comp)
                : std::string()) +
          "  tv " + format("%.4f", s.tv) +
          (disc_ ? "  adv " + format("%.4f", s.adv) + "  fm " + format("%.4f", s.fm) + "  D " +
                       format("%.3f", s.d_loss) + " (real " + format("%+.2f", s.d_real) + ", fake " +
                       format("%+.2f", s.d_fake) + ")"
                 : std::string()) +
          (disc_ && window_cpu_ > 0 ? "  disc " + format("%.0f", 100 * window_disc_cpu_ / window_cpu_) + "% CPU"
                                    : std::string()) +
          "  " + format("%.1f", images_per_second_) + " img/s  ETA " + duration(eta));
      window_cpu_ = window_disc_cpu_ = 0;
      warn_if_discriminator_wins();
    }
    if (step_ % opt_.val_every == 0) {
      const ValidationResult v = validate();
      if (!val_.empty())
        say("step " + std::to_string(step_) + ": val loss " + format("%.4g", v.loss) + "  PSNR " +
            format("%.2f", v.psnr) + "  SSIM " + format("%.3f", v.ssim) + "  l1 " + format("%.2f", v.l1_percent) +
            "%  hole detail " + format("%.2f", v.hole_detail));
    }
    if (step_ % opt_.sample_every == 0) write_samples();
    if (step_ % opt_.save_every == 0) say("saved " + save_checkpoint());
  }
  if (saved_step_ != step_) say("saved " + save_checkpoint());
  if (talk) {
    say("inpaint-train: model " + resolve_checkpoint(opt_.out_dir) + "; losses " + opt_.out_dir + "/log.csv and " +
        opt_.out_dir + "/loss.png; samples in " + opt_.out_dir + "/samples/");
    if (const int64_t bad = data_->unreadable_count(); bad > 0)
      say("inpaint-train: skipped " + std::to_string(bad) + " unreadable photo(s) of " +
          std::to_string(data_->samples_per_epoch()) + " (named in the warnings above)");
  }
  if (step_ < opt_.steps)
    say("stopped at step " + std::to_string(step_) +
        (timed_out ? " after the time limit (" + format("%g", opt_.time_limit) + " s)" : std::string(" on request")) +
        "; resume with --resume " + opt_.out_dir);
  return step_;
}

}  // namespace pconv
