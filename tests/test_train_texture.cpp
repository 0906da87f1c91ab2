// The trainer's texture terms (apps/training/trainer.h): a PatchGAN discriminator trained beside
// the generator (its state in checkpoints, exact resume, a fresh one from --init), the
// random-feature style term, and their one-line refusals.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <sstream>

#include "apps/inference/export_model.h"
#include "apps/training/trainer.h"
#include "core/io/safetensors.h"
#include "tests/test_util.h"
#include "tests/train_options.h"

using namespace pconv;
namespace fs = std::filesystem;

using testing::check_same_tensors;
using testing::error_of;

namespace {

// The trainer tests' tiny run with a 2-layer discriminator (and no sample grids).
TrainOptions tiny_gan(const std::string& out, int64_t steps) {
  TrainOptions o = testing::tiny_train_options(out, steps);
  o.sample_every = 100;
  o.adversarial = 0.5, o.feature_matching = 2.0;
  o.d_width = 4, o.d_layers = 2;
  return o;
}

// A resume of `out` to `steps` that leaves every option the checkpoint saves unset, so each
// comes back from it.
TrainOptions tiny_gan_resume(const std::string& out, int64_t steps) {
  TrainOptions r = tiny_gan(out, steps);
  r.size = r.batch = r.levels = r.width = r.d_width = r.d_layers = 0;
  r.adversarial.reset(), r.feature_matching.reset(), r.seed.reset();
  r.vgg = "";
  r.resume = out;
  return r;
}

std::vector<std::string> csv_row(const std::string& path, int row) {
  std::istringstream in(testing::read_bytes(path));
  std::string line;
  for (int i = 0; i <= row; ++i) std::getline(in, line);
  std::vector<std::string> fields;
  std::istringstream ls(line);
  for (std::string f; std::getline(ls, f, ',');) fields.push_back(f);
  return fields;
}

}  // namespace

TEST_CASE("train texture: with a discriminator, N steps + resume + M steps equals N+M straight, bit for bit") {
  const std::string straight = testing::scratch_dir("gan-exact-straight");
  const std::string split = testing::scratch_dir("gan-exact-split");
  Trainer a(tiny_gan(straight, 5));
  a.run();
  REQUIRE(a.discriminator() != nullptr);
  {
    Trainer b(tiny_gan(split, 3));
    b.run();
  }
  TrainOptions r = tiny_gan_resume(split, 5);
  Trainer c(r);
  CHECK(*c.options().adversarial == 0.5);  // from the checkpoint
  CHECK(*c.options().feature_matching == 2.0);
  CHECK(c.options().d_width == 4);
  CHECK(c.options().d_lr == doctest::Approx(4 * 2e-4));
  c.run();
  check_same_tensors(a.model().state_dict(), c.model().state_dict());
  check_same_tensors(a.discriminator()->state_dict(), c.discriminator()->state_dict());  // incl. u, v
  check_same_tensors(a.discriminator_optimizer()->state_dict(), c.discriminator_optimizer()->state_dict());
  CHECK(testing::read_bytes(straight + "/log.csv") == testing::read_bytes(split + "/log.csv"));
  CHECK(testing::read_bytes(straight + "/checkpoints/step-00000005.safetensors") ==
        testing::read_bytes(split + "/checkpoints/step-00000005.safetensors"));

  // The checkpoint holds the discriminator apart from the model; the run logs the game.
  const SafetensorsFile f = load_safetensors(straight + "/checkpoints/step-00000005.safetensors");
  CHECK(f.tensors.count("train.disc.d1.weight") == 1);
  CHECK(f.tensors.count("train.disc.score.weight_u") == 1);
  CHECK(f.tensors.count("train.disc_optim.m.d1.weight") == 1);
  CHECK(f.tensors.count("train.disc_optim.step") == 1);
  CHECK(f.metadata.at("train.disc.config") == "{\"in_channels\":4,\"layers\":2,\"width\":4}");
  CHECK(csv_row(straight + "/log.csv", 0).back() == "d_fake");
  const auto row = csv_row(straight + "/log.csv", 3);
  REQUIRE(row.size() == 14);
  CHECK(std::stod(row[11]) > 0);  // the discriminator's loss
  CHECK(std::stod(row[10]) > 0);  // feature matching
  CHECK(csv_row(straight + "/val.csv", 0).back() == "hole_detail");
  CHECK(std::isfinite(std::stod(csv_row(straight + "/val.csv", 1).back())));
  CHECK(fs::exists(straight + "/gan.png"));
}

TEST_CASE("train texture: the discriminator learns to tell, and the generator's step does not move it") {
  const std::string out = testing::scratch_dir("gan-learns");
  TrainOptions o = tiny_gan(out, 12);
  o.adversarial = 0.0;  // feature matching alone still trains a discriminator
  o.d_lr = 2e-3;
  Trainer t(o);
  const auto before = t.discriminator()->state_dict();
  std::map<std::string, std::vector<double>> d0;
  for (const auto& [n, x] : before) d0[n] = x.to_double_vector();
  double first = 0, last = 0;
  for (int i = 0; i < 12; ++i) {
    const StepLosses s = t.train_step();
    if (i < 3) first += (s.d_real - s.d_fake) / 3;
    if (i >= 9) last += (s.d_real - s.d_fake) / 3;
  }
  CHECK(last > first);  // the truth scores higher than the composite as it learns
  // Weights move by Adam, u and v by power iteration; all but the score layer's u, a unit
  // vector of one element (always 1).
  int moved = 0;
  for (const auto& [n, x] : t.discriminator()->state_dict()) moved += x.to_double_vector() != d0[n];
  CHECK(moved == int(d0.size()) - 1);
  for (Tensor* p : t.discriminator()->parameters()) CHECK(p->requires_grad());  // unfrozen after each step
}

TEST_CASE("train texture: --init of a generator-only file starts a fresh discriminator; export drops it") {
  const std::string plain = testing::scratch_dir("gan-init-plain");
  TrainOptions p = tiny_gan(plain, 2);
  p.adversarial.reset(), p.feature_matching.reset(), p.d_width = p.d_layers = 0;
  Trainer(p).run();
  const std::string out = testing::scratch_dir("gan-init");
  TrainOptions o = tiny_gan(out, 2);
  o.init = plain;
  o.init = resolve_checkpoint(plain);
  Trainer t(o);
  CHECK(t.step() == 0);
  REQUIRE(t.discriminator() != nullptr);
  CHECK(t.discriminator_optimizer()->step_count() == 0);
  t.run();
  // A training checkpoint with a discriminator still loads as a model for inference.
  PConvUNetConfig c;
  c.levels = 3, c.width = 8;
  PConvUNet net(c, 1);
  CHECK_NOTHROW(net.load_checkpoint(resolve_checkpoint(out)));
}

TEST_CASE("train texture: --init of an export --with-discriminator continues its discriminator, fresh Adam") {
  const std::string first = testing::scratch_dir("gan-carry-first");
  TrainOptions o = tiny_gan(first, 3);
  Trainer a(o);
  a.run();
  const std::string file = first + "/carried.safetensors";
  export_model(std::vector<std::string>{a.last_checkpoint()}, file, DType::F16, {}, true);
  const SafetensorsFile f = load_safetensors(file);
  CHECK(f.metadata.count("train.disc.config") == 1);
  CHECK(f.tensors.count("train.disc_optim.step") == 0);  // no Adam state
  for (const auto& [name, t] : a.discriminator()->state_dict())
    CHECK(f.tensors.at("train.disc." + name).to_double_vector() == t.to_double_vector());  // f32, unrounded

  TrainOptions r = tiny_gan(testing::scratch_dir("gan-carry-next"), 2);
  r.init = file;
  Trainer b(r);
  REQUIRE(b.discriminator() != nullptr);
  CHECK(b.discriminator_optimizer()->step_count() == 0);
  check_same_tensors(b.discriminator()->state_dict(), a.discriminator()->state_dict());
  CHECK(b.step() == 0);
  // The check can fail: another shape of discriminator is not taken from the file.
  TrainOptions w = tiny_gan(testing::scratch_dir("gan-carry-other"), 2);
  w.init = file, w.d_width = 8;
  Trainer c(w);
  CHECK(c.discriminator()->config().width == 8);
  // A checkpoint without a discriminator cannot be exported with one.
  const std::string plain = testing::scratch_dir("gan-carry-plain");
  TrainOptions p = tiny_gan(plain, 1);
  p.adversarial.reset(), p.feature_matching.reset(), p.d_width = p.d_layers = 0;
  Trainer(p).run();
  CHECK_THROWS_WITH_AS(export_model(std::vector<std::string>{resolve_checkpoint(plain)}, plain + "/x.safetensors",
                                    DType::F16, {}, true),
                       doctest::Contains("--with-discriminator: the checkpoint has no discriminator"), Error);
}

TEST_CASE("train texture: random-feature style term trains, resumes with its network, and is logged") {
  const std::string out = testing::scratch_dir("style-random");
  TrainOptions o = tiny_gan(out, 2);
  o.adversarial.reset(), o.feature_matching.reset(), o.d_width = o.d_layers = 0;
  o.vgg = "";
  o.style_features = "random:5:0.125";
  o.style_weight = 50.0;
  o.hole_weight = 2.0, o.tv_weight = 0.5, o.hole_block = 4;
  Trainer t(o);
  const StepLosses s = t.train_step();
  CHECK(s.style_out > 0);
  CHECK(t.loss().weights().hole_block == 4);
  CHECK(s.style_comp > 0);
  CHECK(s.total == doctest::Approx(s.valid + 2 * s.hole + 50 * (s.style_out + s.style_comp) + 0.5 * s.tv).epsilon(1e-5));
  t.run();
  TrainOptions r;
  r.data_dir = o.data_dir, r.out_dir = out, r.resume = out, r.steps = 3, r.quiet = true;
  Trainer c(r);
  CHECK(c.options().style_features == "random:5:0.125");
  CHECK(c.options().vgg == "none");
  CHECK(*c.options().style_weight == 50.0);
  CHECK(*c.options().hole_weight == 2.0);  // the loss continues as it was
  CHECK(*c.options().hole_block == 4);
  CHECK(c.train_step().style_out > 0);
}

TEST_CASE("train texture: bad texture options are one-line errors") {
  const std::string root = testing::scratch_dir("texture-errors");
  auto check_error = [](TrainOptions o, const std::string& expected) {
    const std::string message = error_of([&] { Trainer t(o); });
    INFO(message);
    CHECK(message.find(expected) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
  };
  TrainOptions o = tiny_gan(root + "/out", 2);
  SUBCASE("negative weight") {
    o.adversarial = -1.0;
    check_error(o, "--adversarial must be");
  }
  SUBCASE("NaN weight") {
    o.feature_matching = std::nan("");
    check_error(o, "--feature-matching must be");
  }
  SUBCASE("hole blocks larger than the crops") {
    o.hole_block = o.size + 1;
    check_error(o, "--hole-block");
  }
  SUBCASE("unknown GAN loss") {
    o.gan_loss = "wasserstein";
    check_error(o, "--gan-loss");
  }
  SUBCASE("discriminator too deep for the crops") {
    o.d_layers = 4;
    check_error(o, "too small for a discriminator");
  }
  SUBCASE("discriminator options without a discriminator") {
    o.adversarial.reset(), o.feature_matching.reset();
    check_error(o, "need a discriminator");
  }
  SUBCASE("bad random features") {
    o.style_features = "random:x";
    check_error(o, "--style-features 'random:x'");
    o.style_features = "random:1:2";
    check_error(o, "SCALE in (0, 1]");
  }
  SUBCASE("random features and a VGG file") {
    o.style_features = "random:1";
    o.vgg = root + "/vgg.safetensors";
    check_error(o, "replaces --vgg");
  }
  SUBCASE("a resume that changes the discriminator") {
    Trainer(tiny_gan(root + "/run", 2)).run();
    TrainOptions r = tiny_gan(root + "/run", 4);
    r.resume = root + "/run";
    r.d_width = 8;
    check_error(r, "a resume continues the same discriminator");
  }
}

TEST_CASE("train texture: --d-target hole: an RGB-only discriminator learns where the hole is; resume keeps it") {
  const std::string out = testing::scratch_dir("gan-hole");
  TrainOptions o = tiny_gan(out, 12);
  o.d_target = "hole";
  o.adversarial = 0.0;  // the discriminator alone, so what it learns is its own doing
  o.d_lr = 2e-3;
  o.save_every = 12;
  Trainer t(o);
  REQUIRE(t.discriminator() != nullptr);
  CHECK(t.discriminator()->config().in_channels == 3);
  double first = 0, last = 0;
  for (int i = 0; i < 12; ++i) {
    const StepLosses s = t.train_step();
    // d_fake is the composite's mean over its hole patches: it falls below the truth's as the
    // discriminator learns to find the hole without being shown the mask.
    if (i < 3) first += (s.d_real - s.d_fake) / 3;
    if (i >= 9) last += (s.d_real - s.d_fake) / 3;
  }
  CHECK(last > first);
  t.save_checkpoint();
  const SafetensorsFile f = load_safetensors(out + "/checkpoints/step-00000012.safetensors");
  CHECK(f.metadata.at("train.disc.config") == "{\"in_channels\":3,\"layers\":2,\"width\":4}");

  TrainOptions r = tiny_gan_resume(out, 13);
  {
    Trainer c(r);
    CHECK(c.options().d_target == "hole");
    CHECK(c.discriminator()->config().in_channels == 3);
  }
  r.d_target = "composite";
  CHECK(error_of([&] { Trainer c(r); }).find("--d-target composite differs from the checkpoint") != std::string::npos);
  TrainOptions bad = tiny_gan(testing::scratch_dir("gan-hole-bad"), 1);
  bad.d_target = "edges";
  CHECK(error_of([&] { Trainer c(bad); }).find("expected composite or hole") != std::string::npos);
}
