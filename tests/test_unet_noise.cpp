// Noise injection in the PConv UNet's decoder (PConvUNetConfig::noise): zero strengths change
// nothing, noise lands only where the skip is hole, the graph and inference passes agree, the
// strengths train (f64 gradcheck), and the trainer adds noise to a plain model and resumes
// with it exactly.
#include <doctest/doctest.h>

#include "apps/training/trainer.h"
#include "core/autograd.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "models/pconv_unet.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"
#include "tests/train_options.h"

using namespace pconv;
using testing::max_rel_diff;
using testing::square_hole;

namespace {

PConvUNetConfig noisy(int64_t noise, int64_t levels = 3, int64_t width = 4) {
  PConvUNetConfig c;
  c.levels = levels, c.width = width, c.noise = noise;
  return c;
}

// Gives every noise strength a non-zero value, as training would.
void set_strengths(PConvUNet& net, uint64_t seed) {
  Generator gen(seed);
  for (int64_t n = 1; n <= net.layer_count(); ++n)
    if (net.layer(n).has_noise()) {
      const int64_t c = net.layer(n).weight().size(0);
      net.load_state_dict({{"pconv" + std::to_string(n) + ".noise",
                            Tensor::rand({c}, gen, net.dtype(), Device::CPU, 0.5, 1.5)}},
                          false);
    }
}

}  // namespace

TEST_CASE("unet noise: configuration, names and shapes, bounds") {
  CHECK(noisy(0).to_json().find("noise") == std::string::npos);  // the paper's files unchanged
  CHECK(noisy(2).to_json().find("\"noise\":2") != std::string::npos);
  CHECK(PConvUNetConfig::from_json(noisy(2).to_json()) == noisy(2));
  CHECK(noisy(2).describe() == "3-level width-4 PConvUNet with noise at 2 levels");
  CHECK_THROWS_WITH_AS(PConvUNetConfig::from_json(R"({"levels":3,"noise":3})"), doctest::Contains("noise 3"), Error);
  CHECK_THROWS_WITH_AS(PConvUNetConfig::from_json(R"({"levels":3,"noise":-1})"), doctest::Contains("noise -1"), Error);
  CHECK_THROWS_WITH_AS(PConvUNetConfig::from_json(R"({"levels":3,"noise":"x"})"), doctest::Contains("'noise'"), Error);
  // 3 levels: decoder layers 4 (s = 2), 5 (s = 1), 6 (s = 0, the RGB layer, never noisy).
  const auto shapes = noisy(2).state_shapes();
  CHECK(shapes.at("pconv4.noise") == Shape{8});
  CHECK(shapes.at("pconv5.noise") == Shape{4});
  CHECK(shapes.count("pconv6.noise") == 0);
  CHECK(noisy(1).state_shapes().count("pconv4.noise") == 0);
  PConvUNet net(noisy(1), 3);
  CHECK(net.state_dict().count("pconv5.noise") == 1);
  CHECK(net.state_dict().size() == noisy(1).state_shapes().size());
  CHECK(noisy(2).inference_bytes(1, 64, 64) > noisy(0).inference_bytes(1, 64, 64));
}

TEST_CASE("unet noise: zero strengths give the plain model's output exactly") {
  // Same seed: the same weights are drawn (strengths are zeros, not drawn).
  PConvUNet plain(noisy(0), 41), with(noisy(2), 41);
  plain.eval(), with.eval();
  Generator gen(42);
  const Tensor x = Tensor::randn({2, 3, 16, 16}, gen);
  const Tensor m = square_hole(2, 16, DType::F32);
  with.set_noise_seed(123);
  CHECK(with.forward(x, m).to_float_vector() == plain.forward(x, m).to_float_vector());
}

TEST_CASE("unet noise: the seed changes the holes only; graph and inference passes agree") {
  for (bool training : {false, true}) {
    CAPTURE(training);
    PConvUNet a(noisy(2), 51), b(noisy(2), 51);
    set_strengths(a, 52), set_strengths(b, 52);
    a.train(training), b.train(training);
    Generator gen(53);
    const Tensor x = Tensor::randn({2, 3, 32, 32}, gen);
    const Tensor hole = square_hole(2, 32, DType::F32), full = Tensor::ones({2, 1, 32, 32});
    // Graph pass (a) and inference pass (b) with the same seed: bit for bit.
    a.set_noise_seed(7), b.set_noise_seed(7);
    const Tensor y_graph = a.forward(x, hole);
    Tensor y_infer, y_other_seed, full_1, full_2;
    {
      NoGradGuard no_grad;
      y_infer = b.forward(x, hole);
      b.set_noise_seed(8);
      y_other_seed = b.forward(x, hole);
      full_1 = b.forward(x, full);
      b.set_noise_seed(9);
      full_2 = b.forward(x, full);
    }
    CHECK(y_graph.to_float_vector() == y_infer.to_float_vector());
    // Another seed: different values in the hole's middle, where every skip is hole.
    const auto p = y_infer.to_float_vector(), q = y_other_seed.to_float_vector();
    const size_t centre = size_t(16 * 32 + 16);
    CHECK(p[centre] != q[centre]);
    // Without holes no layer adds noise (in eval mode; in training BatchNorm's batch
    // statistics see the other image's noise, which is the point of the test above).
    if (!training) CHECK(full_1.to_float_vector() == full_2.to_float_vector());
  }
}

TEST_CASE("unet noise: f64 gradcheck through the strengths and the layers around them") {
  PConvUNet net(noisy(2), 61, DType::F64);
  set_strengths(net, 62);
  net.train();
  net.set_noise_seed(5);  // each forward draws the same noise: the function is deterministic
  Generator gen(63);
  // 32×32 with a 16×16 hole: the skips at levels 1 and 2 both have hole pixels.
  const Tensor image = Tensor::randn({2, 3, 32, 32}, gen, DType::F64);
  const Tensor m = square_hole(2, 32, DType::F64);
  std::vector<Tensor> inputs = {*net.named_parameters()[0].second, net.layer(4).weight(),
                                net.layer(5).weight(), net.layer(6).weight()};
  for (auto& [name, p] : net.named_parameters())
    if (name.find(".noise") != std::string::npos) inputs.push_back(*p);
  REQUIRE(inputs.size() == 6);
  testing::GradcheckOptions opt;
  opt.max_checks_per_input = 12;
  opt.rtol = 1e-5, opt.atol = 1e-7;
  auto r = testing::gradcheck([&](const std::vector<Tensor>&) { return net.forward(image, m); }, inputs, opt);
  CHECK_MESSAGE(r.ok, r.report);
  // The strengths get a gradient (they can train at all).
  for (size_t i = 4; i < inputs.size(); ++i) {
    double norm = 0;
    for (double g : inputs[i].grad().to_double_vector()) norm += g * g;
    CHECK(norm > 0);
  }
}

TEST_CASE("unet noise: checkpoints carry it; a plain model refuses a noisy file") {
  const std::string dir = testing::scratch_dir("unet_noise");
  PConvUNet net(noisy(2), 71);
  set_strengths(net, 72);
  net.save_checkpoint(dir + "/n.safetensors");
  PConvUNet back(noisy(2), 0);
  back.load_checkpoint(dir + "/n.safetensors");
  testing::check_same_tensors(net.state_dict(), back.state_dict());
  PConvUNet plain(noisy(0), 0);
  CHECK_THROWS_WITH_AS(plain.load_checkpoint(dir + "/n.safetensors"), doctest::Contains("with noise at 2 levels"), Error);
}

TEST_CASE("train noise: --init adds noise to a plain model (starting at its output); resume is exact") {
  const std::string plain = testing::scratch_dir("noise-init-plain");
  Trainer(testing::tiny_train_options(plain, 2)).run();
  auto noisy_run = [&](const std::string& out, int64_t steps) {
    TrainOptions o = testing::tiny_train_options(out, steps);
    o.sample_every = 100;
    o.init = resolve_checkpoint(plain);
    o.noise = 2;
    return o;
  };
  const std::string straight = testing::scratch_dir("noise-straight"), split = testing::scratch_dir("noise-split");
  Trainer a(noisy_run(straight, 4));
  CHECK(a.model().config().noise == 2);
  CHECK(a.model().state_dict().at("pconv4.noise").to_double_vector() == std::vector<double>(16, 0.0));
  a.run();
  // The strengths moved: the noise is in use.
  CHECK(a.model().state_dict().at("pconv5.noise").to_double_vector() != std::vector<double>(8, 0.0));
  Trainer(noisy_run(split, 2)).run();
  TrainOptions r = testing::tiny_train_options(split, 4);
  r.size = r.batch = r.levels = r.width = 0;
  r.seed.reset();
  r.vgg = "";
  r.sample_every = 100;
  r.resume = split;
  Trainer c(r);
  CHECK(c.options().noise == 2);  // from the checkpoint
  c.run();
  testing::check_same_tensors(a.model().state_dict(), c.model().state_dict());
  CHECK(testing::read_bytes(straight + "/log.csv") == testing::read_bytes(split + "/log.csv"));

  // Refusals: fewer levels than the file, or a different number on resume.
  TrainOptions fewer = noisy_run(testing::scratch_dir("noise-fewer"), 2);
  fewer.init = resolve_checkpoint(straight);
  fewer.noise = 1;
  CHECK(testing::error_of([&] { Trainer t(fewer); }).find("not remove") != std::string::npos);
  TrainOptions other = r;
  other.noise = 1;
  CHECK(testing::error_of([&] { Trainer t(other); }).find("differs from the checkpoint") != std::string::npos);
}
