// inpaint-export and the bundled model: a checkpoint exported to f16/bf16 loads back into an f32
// model with only the storage rounding, keeps the architecture and drops the optimiser state;
// inpaint-run and inpaint-eval find the bundled model (here through $PCONV_MODEL) when no
// --model is given, and say so.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "apps/inference/bundled_model.h"
#include "apps/inference/export_model.h"
#include "apps/inference/inference.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "models/pconv_unet.h"
#include "tests/test_util.h"

using namespace pconv;
using testing::AppRun;
using testing::quote;
using testing::run_app;
namespace fs = std::filesystem;

namespace {

PConvUNetConfig small_config() {
  PConvUNetConfig c;
  c.levels = 3;
  c.width = 8;
  return c;
}

// A checkpoint as inpaint-train writes it: weights, BatchNorm statistics that differ from the
// defaults, an optimiser entry and training metadata.
std::string training_checkpoint(const std::string& dir) {
  PConvUNet net(small_config(), 7);
  for (auto& [name, t] : net.named_buffers())
    if (name.find("running_var") != std::string::npos && t->dtype() == DType::F32)
      for (int64_t i = 0; i < t->numel(); ++i) t->data<float>()[i] = 1.7f + 0.01f * float(i % 7);
  const std::string path = dir + "/ckpt.safetensors";
  net.save_checkpoint(path, {{"train.step", "1200"}, {"train.phase", "train"}, {"train.lr", "0.0005"}},
                      {{"optim.step", Tensor::zeros({1})}});
  return path;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const Tensor x = a.to(DType::F64), y = b.to(DType::F64);
  double m = 0;
  for (int64_t i = 0; i < x.numel(); ++i) m = std::max(m, std::abs(x.data<double>()[i] - y.data<double>()[i]));
  return m;
}


}  // namespace

TEST_CASE("export: f16 and bf16 files load into an f32 model with only the storage rounding") {
  const std::string dir = testing::scratch_dir("export_half");
  const std::string ckpt = training_checkpoint(dir);
  auto reference = inference::load_model(ckpt);
  for (auto entry : {std::tuple{DType::F16, "F16", 1.0 / 2048}, std::tuple{DType::BF16, "BF16", 1.0 / 256}}) {
    auto [dtype, name, rel_tol] = entry;
    CAPTURE(std::get<1>(entry));
    const std::string out = dir + "/model-" + name + ".safetensors";
    const ExportReport r = export_model(ckpt, out, dtype);
    // The file holds half-precision weights, no optimiser state, and the architecture.
    const SafetensorsFile f = load_safetensors(out);
    CHECK(f.tensors.at("pconv1.weight").dtype() == dtype);
    for (auto& [k, t] : f.tensors) CHECK(k.rfind("optim.", 0) != 0);
    CHECK(PConvUNet::checkpoint_config(f.metadata) == small_config());
    CHECK(f.metadata.at("train.step") == "1200");
    CHECK(f.metadata.count("train.lr") == 0);
    CHECK(r.max_rel_error > 0);
    CHECK(r.max_rel_error <= rel_tol);
    // Every tensor, converted back to f32 by the loader, is within the rounding of its type.
    auto loaded = inference::load_model(out);
    CHECK(loaded->dtype() == DType::F32);
    const auto a = reference->state_dict(), b = loaded->state_dict();
    REQUIRE(a.size() == b.size());
    for (auto& entry : a) {
      const auto& [k, t] = entry;
      CAPTURE(entry.first);
      if (t.dtype() == DType::I64) continue;
      const Tensor abs_t = abs(t.to(DType::F64));
      double scale = 0;
      for (int64_t i = 0; i < abs_t.numel(); ++i) scale = std::max(scale, abs_t.data<double>()[i]);
      const double d = max_abs_diff(t, b.at(k));
      CHECK(d <= scale * rel_tol + 1e-30);
    }
    // Training can start from it (inpaint-train --init reads checkpoints with load_checkpoint).
    PConvUNet fresh(small_config(), 99);
    CHECK_NOTHROW(fresh.load_checkpoint(out));
    CHECK(max_abs_diff(fresh.layer(1).weight(), loaded->layer(1).weight()) == 0);
    // The f32 model file is about twice the size of the half one.
    if (dtype == DType::F16) {
      const ExportReport full = export_model(ckpt, dir + "/model-f32.safetensors", DType::F32);
      CHECK(full.max_abs_error == 0);
      CHECK(double(full.bytes) > 1.8 * double(r.bytes));
    }
  }
}

TEST_CASE("export: values f16 cannot hold and files that are not models are refused") {
  const std::string dir = testing::scratch_dir("export_bad");
  PConvUNet net(small_config(), 1);
  Tensor w = net.layer(1).weight();
  w.data<float>()[0] = 1e6f;
  const std::string big = dir + "/big.safetensors";
  net.save_checkpoint(big);
  CHECK_THROWS_WITH_AS(export_model(big, dir + "/x.safetensors", DType::F16),
                       doctest::Contains("f16 cannot store"), Error);
  CHECK_NOTHROW(export_model(big, dir + "/y.safetensors", DType::BF16));  // bf16 has f32's range
  CHECK(!fs::exists(dir + "/x.safetensors"));
  save_safetensors(dir + "/other.safetensors", {{"w", Tensor::zeros({2})}});
  CHECK_THROWS_WITH_AS(export_model(dir + "/other.safetensors", dir + "/z.safetensors", DType::F16),
                       doctest::Contains("not a PConvUNet checkpoint"), Error);
  CHECK_THROWS_AS(export_model(dir + "/missing.safetensors", dir + "/z.safetensors", DType::F16), Error);
}

TEST_CASE("export: inpaint-export writes the file and refuses to overwrite without --force") {
  const std::string dir = testing::scratch_dir("export_app");
  const std::string ckpt = training_checkpoint(dir), out = dir + "/m.safetensors";
  AppRun r = run_app("inpaint-export", "--model " + quote(ckpt) + " --out " + quote(out), dir);
  CHECK(r.status == 0);
  CHECK(r.err.find("as f16") != std::string::npos);
  CHECK(load_safetensors(out).tensors.at("pconv1.weight").dtype() == DType::F16);
  r = run_app("inpaint-export", "--model " + quote(ckpt) + " --out " + quote(out), dir);
  CHECK(r.status == 2);
  CHECK(r.err.find("--force") != std::string::npos);
  r = run_app("inpaint-export", "--model " + quote(ckpt) + " --out " + quote(out) + " --dtype bf16 --force --meta name=test", dir);
  CHECK(r.status == 0);
  CHECK(load_safetensors(out).metadata.at("name") == "test");
}

TEST_CASE("bundled model: found through $PCONV_MODEL and used by inpaint-run and inpaint-eval without --model") {
  const std::string dir = testing::scratch_dir("bundled_model");
  const std::string model = dir + "/bundled.safetensors";
  export_model(training_checkpoint(dir), model, DType::F16);
  const ImageU8 img = testing::random_image(40, 24, 5);
  MaskImage mask(24, 40);
  for (int y = 8; y < 16; ++y)
    for (int x = 10; x < 30; ++x) mask.set_hole(y, x);
  fs::create_directories(dir + "/images");
  fs::create_directories(dir + "/masks");
  save_image(dir + "/images/a.png", img);
  save_mask(dir + "/masks/a.png", mask);

  const char* old = std::getenv("PCONV_MODEL");
  const std::string saved = old ? old : "";
  setenv("PCONV_MODEL", model.c_str(), 1);
  CHECK(bundled::find_model() == fs::weakly_canonical(model).string());
  CHECK(bundled::resolve_model("given.safetensors", "t") == "given.safetensors");
  AppRun r = run_app("inpaint-run", "--image " + quote(dir + "/images/a.png") + " --mask " + quote(dir + "/masks/a.png") +
                                       " --out " + quote(dir + "/out.png"), dir);
  CHECK(r.status == 0);
  CHECK(r.err.find("using the bundled model") != std::string::npos);
  // The same pixels as the library on the same model.
  auto net = inference::load_model(model);
  CHECK(read_image_u8(dir + "/out.png").rgb == inference::inpaint(*net, img, mask).composite.rgb);
  r = run_app("inpaint-eval", "--images " + quote(dir + "/images") + " --masks " + quote(dir + "/masks"), dir);
  CHECK(r.status == 0);
  CHECK(r.err.find("using the bundled model") != std::string::npos);

  // A $PCONV_MODEL that does not exist is skipped, not taken.
  setenv("PCONV_MODEL", (dir + "/nope.safetensors").c_str(), 1);
  CHECK(bundled::find_model() != dir + "/nope.safetensors");
  if (saved.empty()) unsetenv("PCONV_MODEL"); else setenv("PCONV_MODEL", saved.c_str(), 1);
}

TEST_CASE("export: several --model checkpoints are averaged, weights and BatchNorm statistics alike") {
  const std::string dir = testing::scratch_dir("export_average");
  std::vector<std::string> files;
  std::vector<std::map<std::string, Tensor>> states;
  for (uint64_t seed : {1, 2, 3}) {
    PConvUNet net(small_config(), seed);
    for (auto& [name, t] : net.named_buffers())  // statistics that differ per checkpoint
      if (name.find("running_mean") != std::string::npos && t->dtype() == DType::F32)
        for (int64_t i = 0; i < t->numel(); ++i) t->data<float>()[i] = float(seed) * 0.5f + 0.01f * float(i);
    files.push_back(dir + "/c" + std::to_string(seed) + ".safetensors");
    net.save_checkpoint(files.back(), {{"train.step", std::to_string(100 * seed)}});
    states.push_back(net.state_dict());
  }
  const std::string out = dir + "/mean.safetensors";
  export_model(files, out, DType::F32);
  const SafetensorsFile f = load_safetensors(out);
  CHECK(f.metadata.at("train.step") == "300");  // the last one's
  CHECK(f.metadata.at("pconv.averaged_from") == files[0] + ", " + files[1] + ", " + files[2]);
  int checked = 0;
  for (const auto& [name, t] : states[0]) {
    if (t.dtype() != DType::F32) continue;
    const std::vector<double> a = t.to_double_vector(), b = states[1].at(name).to_double_vector(),
                              c = states[2].at(name).to_double_vector(), m = f.tensors.at(name).to_double_vector();
    for (size_t i = 0; i < a.size(); ++i) CHECK(m[i] == doctest::Approx((a[i] + b[i] + c[i]) / 3).epsilon(1e-6));
    ++checked;
  }
  CHECK(checked == int(states[0].size()));
  CHECK(f.tensors.at("pconv1.weight").to_double_vector() != states[2].at("pconv1.weight").to_double_vector());

  // Another architecture is refused, naming both.
  PConvUNetConfig wide = small_config();
  wide.width = 16;
  PConvUNet(wide, 1).save_checkpoint(dir + "/wide.safetensors");
  const std::string err = testing::error_of([&] { export_model({files[0], dir + "/wide.safetensors"}, out, DType::F32); });
  CHECK(err.find("only the same architecture can be averaged") != std::string::npos);
  CHECK(err.find("width-16") != std::string::npos);

  // The app: --model repeated.
  AppRun r = run_app("inpaint-export", "--model " + quote(files[0]) + " --model " + quote(files[1]) + " --out " +
                                           quote(dir + "/app.safetensors"), dir);
  CHECK(r.status == 0);
  CHECK(r.err.find("the mean of 2 checkpoints") != std::string::npos);
}
