// The training loop as a library (apps/training/trainer.h) and its pictures (apps/training/plot.h):
// exact resume, fine-tune phase, divergence, bad inputs, the files a run writes.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "apps/training/plot.h"
#include "apps/training/trainer.h"
#include "core/io/safetensors.h"
#include "core/metrics/metrics.h"
#include "models/vgg16.h"
#include "tests/test_util.h"
#include "tests/train_options.h"

using namespace pconv;
namespace fs = std::filesystem;

namespace {

using testing::check_same_tensors;
using testing::error_of;
using testing::read_bytes;

TrainOptions tiny(const std::string& out, int64_t steps) { return testing::tiny_train_options(out, steps); }

int64_t line_count(const std::string& path) {
  const std::string t = read_bytes(path);
  return int64_t(std::count(t.begin(), t.end(), '\n'));
}

Tensor& parameter(Trainer& t, const std::string& name) {
  for (auto& [n, p] : t.model().named_parameters())
    if (n == name) return *p;
  FAIL("no parameter " << name);
  throw;
}

// A copy of every tensor (state_dict gives views of the live ones).
std::map<std::string, std::vector<double>> snapshot(Module& m) {
  std::map<std::string, std::vector<double>> s;
  for (const auto& [name, t] : m.state_dict()) s[name] = t.to_double_vector();
  return s;
}

}  // namespace

TEST_CASE("train: N steps + resume + M steps equals N+M steps straight, bit for bit") {
  const std::string straight = testing::scratch_dir("train-exact-straight");
  const std::string split = testing::scratch_dir("train-exact-split");
  constexpr int64_t N = 4, M = 3;

  Trainer a(tiny(straight, N + M));
  CHECK(a.run() == N + M);

  {
    Trainer b(tiny(split, N));
    CHECK(b.run() == N);
  }
  TrainOptions resume = tiny(split, N + M);
  resume.size = resume.batch = resume.levels = resume.width = 0;  // all from the checkpoint
  resume.seed.reset();
  resume.resume = split;  // the run folder: its latest checkpoint
  Trainer c(resume);
  CHECK(c.step() == N);
  CHECK(c.options().levels == 3);
  CHECK(c.options().width == 8);
  CHECK(c.options().batch == 2);
  CHECK(*c.options().seed == 7);
  CHECK(c.run() == N + M);

  check_same_tensors(a.model().state_dict(), c.model().state_dict());  // weights and BN statistics
  check_same_tensors(a.optimizer().state_dict(), c.optimizer().state_dict());  // Adam m, v, t, step
  CHECK(a.data().state() == c.data().state());
  // The logs, validations and final checkpoints agree byte for byte too.
  CHECK(read_bytes(straight + "/log.csv") == read_bytes(split + "/log.csv"));
  CHECK(read_bytes(straight + "/val.csv") == read_bytes(split + "/val.csv"));
  CHECK(read_bytes(straight + "/checkpoints/step-00000007.safetensors") ==
        read_bytes(split + "/checkpoints/step-00000007.safetensors"));
}

TEST_CASE("train: a run writes checkpoints (keeping the last K), logs, plots and samples") {
  const std::string out = testing::scratch_dir("train-files");
  TrainOptions o = tiny(out, 7);
  o.keep = 2;
  Trainer t(o);
  t.run();
  // Saves at 2, 4, 6 and the end (7); the last two are kept.
  const auto kept = list_checkpoints(out);
  REQUIRE(kept.size() == 2);
  CHECK(fs::path(kept[0]).filename() == "step-00000006.safetensors");
  CHECK(fs::path(kept[1]).filename() == "step-00000007.safetensors");
  CHECK(resolve_checkpoint(out) == kept[1]);
  CHECK(resolve_checkpoint(out + "/checkpoints") == kept[1]);

  const SafetensorsFile f = load_safetensors(kept[1]);
  CHECK(f.metadata.at("train.step") == "7");
  CHECK(f.metadata.at("train.phase") == "train");
  CHECK(std::stod(f.metadata.at("train.lr")) == 2e-4);
  CHECK(DatasetState::parse(f.metadata.at("train.data_state")) == t.data().state());
  CHECK(f.metadata.at("train.options").find("\"levels\":3") != std::string::npos);
  CHECK(f.tensors.count("optim.step") == 1);
  CHECK(f.tensors.count("optim.m.pconv1.weight") == 1);

  CHECK(line_count(out + "/log.csv") == 1 + 7);          // header + one row per step
  CHECK(line_count(out + "/val.csv") == 1 + 4);          // steps 0, 2, 4, 6
  for (const char* s : {"00000000", "00000003", "00000006"})
    CHECK(fs::exists(out + "/samples/step-" + std::string(s) + ".png"));
  const ImageU8 grid = read_image_u8(out + "/samples/step-00000006.png");
  CHECK(grid.width == 5 * 32 + 6 * 4);
  CHECK(grid.height == 2 * (32 + 4) + 4);  // val_count 2 rows
  const ImageU8 plot = read_image_u8(out + "/loss.png");
  CHECK(plot.width == 900);
  CHECK(t.history().size() == 7);
}

TEST_CASE("train: an old checkpoint that cannot be removed is a warning naming it, once; training goes on") {
  // A non-empty folder under an old checkpoint's name: removing it fails even for root, whom
  // permissions would not stop.
  const std::string out = testing::scratch_dir("train-unremovable");
  const std::string blocked = out + "/checkpoints/step-00000001.safetensors";
  fs::create_directories(blocked);
  testing::write_bytes(blocked + "/inside", "x");
  TrainOptions o = tiny(out, 6);
  o.keep = 1;
  Trainer t(o);
  CHECK(t.run() == 6);
  REQUIRE(t.warnings().size() == 1);  // the saves at 2, 4 and 6 each fail on it, one warning
  CHECK(t.warnings()[0].find("cannot remove the old checkpoint " + blocked + " (") == 0);
  CHECK(fs::is_directory(blocked));
  // The checkpoints themselves are pruned as usual.
  const auto kept = list_checkpoints(out);
  REQUIRE(kept.size() == 1);
  CHECK(fs::path(kept[0]).filename() == "step-00000006.safetensors");
}

TEST_CASE("train: --time-limit stops between steps and saves; the run resumes from there") {
  const std::string out = testing::scratch_dir("train-time-limit");
  TrainOptions o = tiny(out, 50);
  o.time_limit = 1e-9;  // already spent when the first step would start
  {
    Trainer t(o);
    CHECK(t.run() == 0);
  }
  const auto kept = list_checkpoints(out);
  REQUIRE(kept.size() == 1);
  CHECK(fs::path(kept[0]).filename() == "step-00000000.safetensors");
  TrainOptions more = tiny(out, 3);
  more.resume = out;
  Trainer t(more);
  CHECK(t.run() == 3);
}

TEST_CASE("train: a resume removes the temporary files of a killed writer, not a live one's") {
  const std::string out = testing::scratch_dir("train-stale-temp");
  Trainer(tiny(out, 2)).run();
  // A process that has exited: its pid names the leftovers of a killed save.
  const pid_t child = fork();
  if (child == 0) _exit(0);
  REQUIRE(child > 0);
  waitpid(child, nullptr, 0);
  const std::string dead = std::to_string(child), alive = std::to_string(getpid());
  const std::vector<std::string> stale = {out + "/checkpoints/step-00000003.safetensors.tmp-" + dead,
                                          out + "/loss.png.tmp-" + dead, out + "/samples/step-00000003.png.tmp-" + dead};
  const std::vector<std::string> kept = {out + "/checkpoints/step-00000009.safetensors.tmp-" + alive,
                                         out + "/notes.tmp-draft", out + "/checkpoints/x.tmp-"};
  for (const auto& f : stale) testing::write_bytes(f, "partial");
  for (const auto& f : kept) testing::write_bytes(f, "keep");
  TrainOptions o = tiny(out, 3);
  o.resume = out;
  Trainer t(o);
  CHECK(t.run() == 3);
  for (const auto& f : stale) CHECK_FALSE(fs::exists(f));
  for (const auto& f : kept) CHECK(fs::exists(f));
}

TEST_CASE("train: with a torchvision-layout VGG-16 file the perceptual and style terms train too") {
  // A full-size VGG-16 trunk with random weights, saved under torchvision's names.
  const std::string dir = testing::scratch_dir("train-vgg");
  VGG16Features vgg({1.0, 3});
  std::map<std::string, Tensor> state;
  for (int i = 0; i < VGG16Features::kConvCount; ++i) {
    const std::string base = "features." + std::to_string(VGG16Features::kConvIndices[size_t(i)]);
    state[base + ".weight"] = vgg.weight(i);
    state[base + ".bias"] = vgg.bias(i);
  }
  save_safetensors(dir + "/vgg16.safetensors", state);
  TrainOptions o = tiny(dir + "/run", 2);
  o.vgg = dir + "/vgg16.safetensors";
  Trainer t(o);
  CHECK(t.run() == 2);
  REQUIRE(t.history().size() == 2);
  for (const StepLosses& s : t.history()) {
    CHECK(s.perceptual > 0);
    CHECK(s.style_out > 0);
    CHECK(s.style_comp > 0);
    CHECK(std::isfinite(s.total));
  }
}

TEST_CASE("train: validation and samples do not disturb training (eval mode, no graph)") {
  const std::string with = testing::scratch_dir("train-val-with"), without = testing::scratch_dir("train-val-without");
  TrainOptions a = tiny(with, 4), b = tiny(without, 4);
  a.val_every = a.sample_every = 1;
  b.val_every = b.sample_every = b.save_every = 100;
  Trainer ta(a), tb(b);
  ta.run(), tb.run();
  check_same_tensors(ta.model().state_dict(), tb.model().state_dict());
}

TEST_CASE("train: --finetune from --init uses lr 5e-5 and freezes the encoder's BatchNorm statistics") {
  const std::string base = testing::scratch_dir("train-ft-base"), ft = testing::scratch_dir("train-ft");
  Trainer(tiny(base, 2)).run();
  TrainOptions o = tiny(ft, 3);
  o.levels = o.width = 0;  // from the --init checkpoint
  o.init = base + "/checkpoints/step-00000002.safetensors";
  o.finetune = true;
  Trainer t(o);
  CHECK(t.step() == 0);
  CHECK(t.optimizer().lr() == 5e-5);
  CHECK(t.optimizer().step_count() == 0);  // --init takes weights only
  CHECK(t.model().is_finetune());
  const auto before = snapshot(t.model());
  t.run();
  const auto after = snapshot(t.model());
  // Encoder BNs are pconv2..pconv3 (3 levels): statistics frozen, affine parameters still
  // learn; decoder statistics keep moving.
  CHECK(before.at("pconv2.bn.running_mean") == after.at("pconv2.bn.running_mean"));
  CHECK(before.at("pconv3.bn.running_var") == after.at("pconv3.bn.running_var"));
  CHECK(before.at("pconv4.bn.running_mean") != after.at("pconv4.bn.running_mean"));
  CHECK(before.at("pconv2.bn.weight") != after.at("pconv2.bn.weight"));
  const SafetensorsFile f = load_safetensors(t.last_checkpoint());
  CHECK(f.metadata.at("train.phase") == "finetune");

  // A resume of that run stays in phase 2 with its learning rate, without --finetune.
  TrainOptions r = tiny(ft, 4);
  r.resume = ft;
  Trainer rt(r);
  CHECK(rt.model().is_finetune());
  CHECK(rt.optimizer().lr() == 5e-5);
}

TEST_CASE("train: --fill harmonic from --init of a plain model starts at the fill; a resume keeps the fill") {
  const std::string base = testing::scratch_dir("train-fill-base"), res = testing::scratch_dir("train-fill");
  Trainer(tiny(base, 2)).run();
  TrainOptions o = tiny(res, 2);
  o.levels = o.width = 0;
  o.init = base + "/checkpoints/step-00000002.safetensors";
  o.fill = "harmonic";
  Trainer t(o);
  CHECK(t.model().config().fill == PConvUNetConfig::Fill::Harmonic);
  // Every weight is the checkpoint's except the last layer's, which starts at zero.
  const SafetensorsFile init = load_safetensors(o.init);
  for (const auto& [n, values] : snapshot(t.model())) {
    const std::string name = n;
    const std::vector<double> v = values;
    INFO(name);
    if (name.rfind("pconv6.", 0) == 0)
      for (double x : v) CHECK(x == 0);
    else
      CHECK(v == init.tensors.at(name).to_double_vector());
  }
  t.run();
  const SafetensorsFile f = load_safetensors(t.last_checkpoint());
  CHECK(PConvUNet::checkpoint_config(f.metadata).fill == PConvUNetConfig::Fill::Harmonic);
  CHECK(parameter(t, "pconv6.weight").to_double_vector() != std::vector<double>(size_t(parameter(t, "pconv6.weight").numel()), 0.0));

  // A resume takes the fill from the checkpoint; asking for another is an error.
  TrainOptions r = tiny(res, 3);
  r.resume = res;
  CHECK(Trainer(r).model().config().fill == PConvUNetConfig::Fill::Harmonic);
  r.fill = "none";
  CHECK(error_of([&] { Trainer x(r); }).find("--fill none differs from the checkpoint's (harmonic)") != std::string::npos);
}

TEST_CASE("train: a NaN stops with the step and the term named, and keeps the last good checkpoint") {
  SUBCASE("NaN reaches the loss of the next step") {
    const std::string out = testing::scratch_dir("train-nan-loss");
    Trainer t(tiny(out, 8));
    t.after_step = [](Trainer& tr) {
      if (tr.step() == 3) parameter(tr, "pconv6.bias").set({0}, std::numeric_limits<double>::quiet_NaN());
    };
    const std::string message = error_of([&] { t.run(); });
    INFO(message);
    CHECK(message.find("step 4: the valid loss is nan") != std::string::npos);
    CHECK(message.find("step-00000002.safetensors") != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
    const auto kept = list_checkpoints(out);
    REQUIRE(kept.size() == 1);
    CHECK(fs::path(kept[0]).filename() == "step-00000002.safetensors");
    CHECK(line_count(out + "/log.csv") == 1 + 3);  // the broken step is not logged
  }
  SUBCASE("NaN made by the update of a step that would save") {
    const std::string out = testing::scratch_dir("train-nan-update");
    Trainer t(tiny(out, 8));
    t.after_step = [](Trainer& tr) {
      if (tr.step() == 4) parameter(tr, "pconv3.bn.weight").set({0}, std::numeric_limits<double>::infinity());
    };
    const std::string message = error_of([&] { t.run(); });
    INFO(message);
    CHECK(message.find("step 4:") != std::string::npos);
    CHECK(message.find("non-finite") != std::string::npos);
    const auto kept = list_checkpoints(out);
    REQUIRE(kept.size() == 1);
    CHECK(fs::path(kept[0]).filename() == "step-00000002.safetensors");
  }
}

TEST_CASE("train: bad inputs are one-line errors") {
  const std::string root = testing::scratch_dir("train-errors");
  auto check_error = [](TrainOptions o, const std::string& expected) {
    const std::string message = error_of([&] { Trainer t(o); });
    INFO(message);
    CHECK(message.find(expected) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
  };
  SUBCASE("missing data folder") {
    TrainOptions o = tiny(root + "/out", 2);
    o.data_dir = root + "/nowhere";
    check_error(o, "nowhere: not a folder");
  }
  SUBCASE("empty data folder") {
    fs::create_directories(root + "/empty");
    TrainOptions o = tiny(root + "/out", 2);
    o.data_dir = root + "/empty";
    check_error(o, "empty: no images");
  }
  SUBCASE("no --vgg says how to get it and about --vgg none") {
    TrainOptions o = tiny(root + "/out", 2);
    o.vgg = "";
    check_error(o, "scripts/export_vgg16.py");
    check_error(o, "--vgg none");
  }
  SUBCASE("missing VGG file") {
    TrainOptions o = tiny(root + "/out", 2);
    o.vgg = root + "/vgg.safetensors";
    check_error(o, "vgg.safetensors");
  }
  SUBCASE("--resume of a missing checkpoint") {
    TrainOptions o = tiny(root + "/out", 2);
    o.resume = root + "/missing.safetensors";
    check_error(o, "missing.safetensors: no such checkpoint");
  }
  SUBCASE("--resume of a corrupt checkpoint") {
    write_file_atomic(root + "/corrupt.safetensors", std::string("\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":", 14));
    TrainOptions o = tiny(root + "/out", 2);
    o.resume = root + "/corrupt.safetensors";
    check_error(o, "corrupt.safetensors:");
  }
  SUBCASE("--resume of another architecture") {
    Trainer(tiny(root + "/three", 2)).run();
    TrainOptions o = tiny(root + "/out", 4);
    o.levels = 4;
    o.resume = root + "/three";
    check_error(o, "checkpoint is a 3-level width-8 PConvUNet, the model is a 4-level width-8 PConvUNet");
  }
  SUBCASE("--resume of a checkpoint that did not come from training") {
    PConvUNetConfig c;
    c.levels = 3, c.width = 8;
    PConvUNet(c).save_checkpoint(root + "/bare.safetensors");
    TrainOptions o = tiny(root + "/out", 2);
    o.resume = root + "/bare.safetensors";
    check_error(o, "not a training checkpoint");
  }
  SUBCASE("--resume of a checkpoint with bad metadata names the file and the key") {
    Trainer(tiny(root + "/meta", 2)).run();
    const SafetensorsFile good = load_safetensors(resolve_checkpoint(root + "/meta"));
    const std::pair<const char*, const char*> bad[] = {
        {"train.step", "abc"}, {"train.step", "-3"}, {"train.step", "99999999999999999999999"},
        {"train.lr", "fast"}, {"train.lr", "inf"}, {"train.phase", "warmup"},
        {"train.data_state", "seed=x"}, {"train.options", "[1]"}, {"train.options", R"({"size":"big"})"},
        {"train.data_count", "many"}, {"pconv.config", R"({"levels":"x"})"}, {"pconv.config", R"({"width":5000})"}};
    const std::string expected[] = {
        "metadata train.step is 'abc', not a non-negative integer",
        "metadata train.step is '-3', not a non-negative integer",
        "metadata train.step is '99999999999999999999999', not a non-negative integer",
        "metadata train.lr is 'fast', not a finite number",
        "metadata train.lr is 'inf', not a finite number",
        "metadata train.phase is 'warmup', not 'train' or 'finetune'",
        "metadata train.data_state: dataset state: 'seed=x' is not of the form",
        "metadata train.options is not a JSON object",
        "metadata train.options.size is '\"big\"', not a non-negative integer",
        "metadata train.data_count is 'many', not a non-negative integer",
        "metadata pconv.config: PConvUNetConfig: 'levels' in '{\"levels\":\"x\"}' is not an integer",
        "metadata pconv.config: PConvUNetConfig: levels 8 (1..16), width 5000 (1..1024)"};
    for (size_t i = 0; i < std::size(bad); ++i) {
      auto meta = good.metadata;
      meta[bad[i].first] = bad[i].second;
      const std::string path = root + "/bad-" + std::to_string(i) + ".safetensors";
      save_safetensors(path, good.tensors, meta);
      TrainOptions o = tiny(root + "/out-meta-" + std::to_string(i), 4);
      o.resume = path;
      o.size = 0, o.batch = 0;  // from the checkpoint's train.options
      const std::string what = std::string(bad[i].first) + " = " + bad[i].second;
      INFO(what);
      check_error(o, path + ": " + expected[i]);
    }
  }
  SUBCASE("--resume past --steps") {
    Trainer(tiny(root + "/done", 2)).run();
    TrainOptions o = tiny(root + "/done", 2);
    o.resume = root + "/done";
    check_error(o, "nothing to do");
  }
  SUBCASE("--out is a file, or below one") {
    write_file_atomic(root + "/file", "x");
    check_error(tiny(root + "/file", 2), "exists and is not a folder");
    check_error(tiny(root + "/file/sub", 2), "cannot create the folder");
  }
  SUBCASE("--out holds an earlier run") {
    Trainer(tiny(root + "/earlier", 2)).run();
    check_error(tiny(root + "/earlier", 4), "holds checkpoints of an earlier run");
  }
  SUBCASE("non-positive numbers") {
    TrainOptions o = tiny(root + "/out", 2);
    o.keep = 0;
    check_error(o, "must be positive");
  }
}

// On a machine with a GPU, main excludes the test: a doctest skip, the reason printed first.
TEST_CASE("train: --device cuda is a one-line error on a machine without a GPU (needs no CUDA device)") {
  TrainOptions o = tiny(testing::scratch_dir("train-no-cuda") + "/out", 2);
  o.device = Device::CUDA;
  const std::string message = error_of([&] { Trainer t(o); });
  INFO(message);
  CHECK(message.find("--device cuda: ") != std::string::npos);
  CHECK(message.find('\n') == std::string::npos);
}

TEST_CASE("plot: curves, axes and legend in their colours") {
  Curve a{"total", {}, {}, {214, 39, 40}}, b{"hole", {}, {}, {31, 119, 180}};
  for (int i = 1; i <= 5000; ++i) {
    a.x.push_back(i), a.y.push_back(10.0 / i);
    b.x.push_back(i), b.y.push_back(i % 2 ? 0.5 : std::numeric_limits<double>::quiet_NaN());  // NaNs skipped
  }
  PlotOptions o;
  o.width = 600, o.height = 300;  // a plot area of 350 px (legend on the right)
  const ImageU8 img = plot_curves({a, b}, o);
  REQUIRE(img.width == 600);
  REQUIRE(img.height == 300);
  auto count = [&](Rgb c) {
    int64_t n = 0;
    for (size_t i = 0; i < img.rgb.size(); i += 3)
      n += img.rgb[i] == c[0] && img.rgb[i + 1] == c[1] && img.rgb[i + 2] == c[2];
    return n;
  };
  // Each curve spans the plot area horizontally plus its legend swatch.
  CHECK(count(a.color) > 350);
  CHECK(count(b.color) > 350);
  CHECK(count({0, 0, 0}) > 500);  // axes, tick labels, legend text
  // On a log axis a constant 0.5 is a horizontal line: one row holds most of its pixels.
  int best_row = 0;
  for (int y = 0; y < img.height; ++y) {
    int n = 0;
    for (int x = 0; x < 420; ++x) {
      const uint8_t* p = &img.rgb[(size_t(y) * img.width + x) * 3];
      n += p[0] == b.color[0] && p[1] == b.color[1] && p[2] == b.color[2];
    }
    best_row = std::max(best_row, n);
  }
  CHECK(best_row > 300);
  // No data at all still gives a picture, saying so.
  CHECK(plot_curves({}, o).width == 600);

  // Smoothed: a zigzag curve is drawn faded (30 % of its colour on white), its moving average
  // in full colour on top.
  Curve zig{"zig", {}, {}, {31, 119, 180}};
  for (int i = 0; i < 100; ++i) zig.x.push_back(i), zig.y.push_back(i % 2 ? 3.0 : 0.3);
  o.smooth = 30;  // ±30 columns: about 17 points of the zigzag
  const ImageU8 smooth = plot_curves({zig}, o);
  Rgb faded;
  for (int k = 0; k < 3; ++k) faded[k] = uint8_t(255 - (255 - zig.color[k]) * 3 / 10);
  auto count_in = [](const ImageU8& im, Rgb c) {
    int64_t n = 0;
    for (size_t i = 0; i < im.rgb.size(); i += 3)
      n += im.rgb[i] == c[0] && im.rgb[i + 1] == c[1] && im.rgb[i + 2] == c[2];
    return n;
  };
  CHECK(count_in(smooth, faded) > 2000);     // the zigzag: 99 tall strokes
  CHECK(count_in(smooth, zig.color) < 1000);  // the average: about one line across, and the swatch
  CHECK(count_in(smooth, zig.color) > 300);
}

TEST_CASE("plot: sample grid columns are input with white holes, mask, output, composite, truth") {
  const int64_t s = 12;
  SampleRow r;
  r.ground_truth = Tensor::full({3, s, s}, 0.25);
  r.output = Tensor::full({3, s, s}, 0.75);
  r.mask = MaskImage(s, s);
  r.mask.set_hole(5, 6);
  r.composite = composite(r.output, r.ground_truth, r.mask);
  const ImageU8 g = sample_grid({r, r});
  REQUIRE(g.width == 5 * s + 6 * 4);
  REQUIRE(g.height == 2 * (s + 4) + 4);
  auto px = [&](int column, int y, int x) {
    const int gx = 4 + column * int(s + 4) + x, gy = 4 + y;
    return int(g.rgb[(size_t(gy) * g.width + gx) * 3]);
  };
  CHECK(px(0, 5, 6) == 255);  // hole shown white
  CHECK(px(0, 0, 0) == 64);   // known pixel: the photo (0.25 → 64)
  CHECK(px(1, 5, 6) == 255);
  CHECK(px(1, 0, 0) == 0);
  CHECK(px(2, 0, 0) == 191);  // output everywhere
  CHECK(px(3, 5, 6) == 191);  // composite: output in the hole,
  CHECK(px(3, 0, 0) == 64);   // the photo elsewhere
  CHECK(px(4, 5, 6) == 64);
  CHECK(int(g.rgb[0]) == 128);  // grey gap
}

TEST_CASE("train resume: --resume RUN alone continues in that run with its photos and validation folder") {
  const std::string out = testing::scratch_dir("resume-alone");
  TrainOptions o = testing::tiny_train_options(out, 2);
  o.val_dir = testing::source_path("data/val");
  Trainer(o).run();
  TrainOptions r;
  r.resume = out + "/checkpoints";
  r.steps = 3;
  r.quiet = true;
  {
    Trainer t(r);
    CHECK(t.options().out_dir == out);
    CHECK(t.options().data_dir == o.data_dir);
    CHECK(t.options().val_dir == o.val_dir);
    t.run();
  }
  CHECK(list_checkpoints(out).size() >= 2);
  // Without --steps a resume continues to the run's own total (an interrupted 4-step run).
  const std::string cut = testing::scratch_dir("resume-alone-steps");
  {
    Trainer t(testing::tiny_train_options(cut, 4));
    t.train_step();
    t.save_checkpoint();
  }
  TrainOptions rs;
  rs.resume = cut;
  rs.quiet = true;
  CHECK(Trainer(rs).options().steps == 4);
  // A checkpoint file outside a run's checkpoints/ folder needs --out.
  const std::string loose = testing::scratch_dir("resume-loose") + "/ck.safetensors";
  std::filesystem::copy_file(resolve_checkpoint(out), loose);
  TrainOptions l;
  l.resume = loose;
  l.steps = 4;
  CHECK(testing::error_of([&] { Trainer t(l); }).find("--out is required") != std::string::npos);
  TrainOptions none;
  none.out_dir = out;
  CHECK(testing::error_of([&] { Trainer t(none); }).find("--data is required") != std::string::npos);
}
