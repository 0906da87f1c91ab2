// Bilinear decoder upsampling (PConvUNetConfig::upsample) and the trainer options of the texture
// recipe that go with it: --upsample, --noise-strength, --d-warmup.
#include <doctest/doctest.h>

#include "apps/training/trainer.h"
#include "core/autograd.h"
#include "core/ops.h"
#include "models/pconv_unet.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"
#include "tests/train_options.h"

using namespace pconv;

namespace {

PConvUNetConfig small(Upsampling mode, int64_t levels = 3, int64_t width = 4) {
  PConvUNetConfig c;
  c.levels = levels, c.width = width, c.upsample = mode;
  return c;
}

}  // namespace

TEST_CASE("unet upsample: configuration in JSON and words; nearest files are unchanged") {
  const PConvUNetConfig nearest = small(Upsampling::Nearest), bilinear = small(Upsampling::Bilinear);
  CHECK(nearest.to_json().find("upsample") == std::string::npos);
  CHECK(bilinear.to_json().find("\"upsample\":\"bilinear\"") != std::string::npos);
  CHECK(PConvUNetConfig::from_json(bilinear.to_json()) == bilinear);
  CHECK(PConvUNetConfig::from_json(R"({"levels":3,"width":4,"upsample":"nearest"})") == nearest);
  CHECK(bilinear.describe() == "3-level width-4 PConvUNet with bilinear upsampling");
  CHECK_THROWS_WITH_AS(PConvUNetConfig::from_json(R"({"upsample":"bicubic"})"),
                       doctest::Contains("'upsample'"), Error);
  CHECK_THROWS_WITH_AS(PConvUNetConfig::from_json(R"({"upsample":1})"), doctest::Contains("'upsample'"), Error);
  // The same weights and state names: only the decoder's resampling differs.
  CHECK(nearest.state_shapes() == bilinear.state_shapes());
}

TEST_CASE("unet upsample: bilinear changes the output; graph and inference passes agree bit for bit") {
  PConvUNet near(small(Upsampling::Nearest), 41), bil(small(Upsampling::Bilinear), 41);
  near.eval(), bil.eval();
  Generator gen(42);
  const Tensor x = Tensor::randn({2, 3, 16, 16}, gen), m = testing::square_hole(2, 16);
  const Tensor y_graph = bil.forward(x, m);
  REQUIRE(y_graph.grad_fn());
  Tensor y, y_near;
  {
    NoGradGuard no_grad;
    y = bil.forward(x, m);
    y_near = near.forward(x, m);
  }
  CHECK(y.to_float_vector() == y_graph.to_float_vector());
  CHECK(testing::max_rel_diff(y, y_near) > 1e-3);
}

TEST_CASE("unet upsample: f64 gradcheck of a bilinear model (2 levels, width 2, 8×8, BN training)") {
  PConvUNet net(small(Upsampling::Bilinear, 2, 2), 51, DType::F64);
  net.train();
  Generator gen(52);
  Tensor x = Tensor::randn({2, 3, 8, 8}, gen, DType::F64);
  x.set_requires_grad(true);
  const Tensor m = testing::square_hole(2, 8, DType::F64);
  std::vector<Tensor> inputs{x};
  for (Tensor* p : net.parameters()) inputs.push_back(*p);
  auto r = testing::gradcheck([&](const std::vector<Tensor>&) { return net.forward(x, m); }, inputs);
  CHECK_MESSAGE(r.ok, r.report);
}

TEST_CASE("unet upsample: checkpoints carry it; a nearest model refuses a bilinear file") {
  const std::string dir = testing::scratch_dir("unet_upsample");
  PConvUNet net(small(Upsampling::Bilinear), 61);
  net.save_checkpoint(dir + "/b.safetensors");
  PConvUNet back(small(Upsampling::Bilinear), 0);
  back.load_checkpoint(dir + "/b.safetensors");
  testing::check_same_tensors(net.state_dict(), back.state_dict());
  PConvUNet near(small(Upsampling::Nearest), 0);
  CHECK_THROWS_WITH_AS(near.load_checkpoint(dir + "/b.safetensors"), doctest::Contains("bilinear upsampling"), Error);
}

TEST_CASE("train upsample: --init switches a nearest model to bilinear with its weights; a resume keeps it") {
  const std::string plain = testing::scratch_dir("upsample-init-plain");
  Trainer(testing::tiny_train_options(plain, 2)).run();
  const std::string out = testing::scratch_dir("upsample-bilinear");
  TrainOptions o = testing::tiny_train_options(out, 2);
  o.init = resolve_checkpoint(plain);
  o.upsample = "bilinear";
  Trainer a(o);
  CHECK(a.model().config().upsample == Upsampling::Bilinear);
  const auto file = load_safetensors(o.init).tensors;
  for (const auto& [name, t] : a.model().state_dict()) CHECK(t.to_double_vector() == file.at(name).to_double_vector());
  a.run();
  TrainOptions r = testing::tiny_train_options(out, 3);
  r.size = r.batch = r.levels = r.width = 0;
  r.seed.reset();
  r.vgg = "";
  r.resume = out;
  {
    Trainer c(r);
    CHECK(c.options().upsample == "bilinear");
    CHECK(c.model().config().upsample == Upsampling::Bilinear);
  }
  r.upsample = "nearest";
  CHECK(testing::error_of([&] { Trainer t(r); }).find("differs from the checkpoint") != std::string::npos);
  TrainOptions bad = testing::tiny_train_options(testing::scratch_dir("upsample-bad"), 1);
  bad.upsample = "bicubic";
  CHECK(testing::error_of([&] { Trainer t(bad); }).find("--upsample bicubic") != std::string::npos);
}

TEST_CASE("train noise: --noise-strength starts the added strengths there") {
  const std::string plain = testing::scratch_dir("strength-plain");
  Trainer(testing::tiny_train_options(plain, 1)).run();
  TrainOptions o = testing::tiny_train_options(testing::scratch_dir("strength"), 1);
  o.init = resolve_checkpoint(plain);
  o.noise = 2;
  o.noise_strength = 0.25;
  Trainer t(o);
  CHECK(t.model().state_dict().at("pconv4.noise").to_double_vector() == std::vector<double>(16, 0.25));
  CHECK(t.model().state_dict().at("pconv5.noise").to_double_vector() == std::vector<double>(8, 0.25));
  o.noise_strength = -1;
  CHECK(testing::error_of([&] { Trainer bad(o); }).find("--noise-strength") != std::string::npos);
}

TEST_CASE("train texture: --d-warmup trains the discriminator alone, then the generator takes its terms") {
  // During the warm-up the generator's steps are those of a run without a discriminator.
  std::map<std::string, std::string> dirs;  // scratch_dir empties the folder: once per name
  auto run = [&](const std::string& name, double adversarial, int64_t warmup, int64_t steps) {
    dirs[name] = testing::scratch_dir(name);
    TrainOptions o = testing::tiny_train_options(dirs[name], steps);
    o.sample_every = 100;
    o.adversarial = adversarial, o.feature_matching = adversarial;
    if (warmup) o.d_warmup = warmup;
    auto t = std::make_unique<Trainer>(o);
    t->run();
    return t;
  };
  const auto plain = run("warmup-plain", 0, 0, 2), warm = run("warmup-2", 1, 2, 2), cold = run("warmup-0", 1, 0, 2);
  testing::check_same_tensors(plain->model().state_dict(), warm->model().state_dict());
  CHECK(testing::max_rel_diff(plain->model().state_dict().at("pconv6.weight"),
                              cold->model().state_dict().at("pconv6.weight")) > 0);
  // The discriminator trained all the same, and after the warm-up the generator follows it.
  CHECK(warm->history().back().d_loss != 0);
  const auto after = run("warmup-after", 1, 1, 2);
  CHECK(testing::max_rel_diff(plain->model().state_dict().at("pconv6.weight"),
                              after->model().state_dict().at("pconv6.weight")) > 0);
  // Saved and taken back by a resume; refused without a discriminator or below 0.
  TrainOptions r = testing::tiny_train_options(dirs.at("warmup-2"), 3);
  r.size = r.batch = r.levels = r.width = 0;
  r.seed.reset();
  r.vgg = "";
  r.resume = r.out_dir;
  {
    Trainer c(r);
    CHECK(c.options().d_warmup == 2);
  }
  TrainOptions none = testing::tiny_train_options(testing::scratch_dir("warmup-none"), 1);
  none.d_warmup = 5;
  CHECK(testing::error_of([&] { Trainer t(none); }).find("--d-warmup need") != std::string::npos);
  none.adversarial = 1, none.d_warmup = -1;
  CHECK(testing::error_of([&] { Trainer t(none); }).find("--d-warmup must be") != std::string::npos);
}
