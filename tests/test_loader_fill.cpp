// The residual model's harmonic fill made by the training data loader (core/data/network_fill.h,
// DatasetOptions::harmonic_fill) instead of on the trainer's main thread: the same values bit
// for bit as the model's own fill, the same forward, the same training.
#include <doctest/doctest.h>

#include "apps/training/trainer.h"
#include "core/autograd.h"
#include "core/data/dataset.h"
#include "core/data/imagenet.h"
#include "core/data/network_fill.h"
#include "models/harmonic_fill.h"
#include "models/pconv_unet.h"
#include "tests/test_util.h"
#include "tests/train_options.h"

using namespace pconv;

namespace {

bool same(const Tensor& a, const Tensor& b) { return a.shape() == b.shape() && a.to_float_vector() == b.to_float_vector(); }

DatasetOptions photos(int workers) {
  DatasetOptions o;
  o.image_dir = testing::source_path("data/train");
  o.size = 40, o.batch = 3, o.seed = 11, o.workers = workers;
  return o;
}

// What PConvUNet::forward computes when it is not handed a fill.
Tensor model_fill(const Batch& b) { return harmonic_fill(imagenet_normalize(b.images) * b.masks, b.masks); }

}  // namespace

TEST_CASE("harmonic fill in the loader: each batch's fill is harmonic_fill of its normalised images, bit for bit") {
  TrainingData plain(photos(1));
  for (int workers : {1, 3}) {
    DatasetOptions o = photos(workers);
    o.harmonic_fill = true;
    TrainingData with_fill(o);
    TrainingData again(photos(1));
    for (int i = 0; i < 3; ++i) {
      const Batch a = again.next(), b = with_fill.next();
      CAPTURE(workers);
      CAPTURE(i);
      // The same samples as without the option; the fill beside them.
      CHECK(same(a.images, b.images));
      CHECK(same(a.masks, b.masks));
      CHECK_FALSE(a.fill.defined());
      REQUIRE(b.fill.shape() == Shape{3, 3, 40, 40});
      const Tensor expected = model_fill(b);
      CHECK(same(b.fill, expected));
      // Not trivially so: the holes are filled, not left at their normalised pixels.
      CHECK_FALSE(same(b.fill, imagenet_normalize(b.images)));
    }
  }
  // A wrong image is a one-line error, not a read past the end.
  std::vector<float> out(3 * 4 * 4);
  CHECK_THROWS_WITH_AS(network_fill(Tensor::zeros({3, 4, 5}), MaskImage(4, 4), out.data()),
                       doctest::Contains("network_fill: image [3, 4, 5]"), Error);
}

TEST_CASE("harmonic fill handed to the UNet: the same output and gradients bit for bit; wrong fills are errors") {
  PConvUNetConfig c;
  c.levels = 3, c.width = 4, c.fill = PConvUNetConfig::Fill::Harmonic;
  DatasetOptions o = photos(1);
  o.harmonic_fill = true;
  TrainingData data(o);
  const Batch b = data.next();
  const Tensor input = imagenet_normalize(b.images) * b.masks;

  PConvUNet own(c, 5), handed(c, 5);
  own.train(), handed.train();
  const Tensor y_own = own.forward(input, b.masks), y_handed = handed.forward(input, b.masks, b.fill);
  CHECK(same(y_own, y_handed));
  sum(y_own * y_own).backward();
  sum(y_handed * y_handed).backward();
  CHECK(same(own.layer(1).weight().grad(), handed.layer(1).weight().grad()));
  CHECK(same(own.layer(6).bias().grad(), handed.layer(6).bias().grad()));
  {
    NoGradGuard no_grad;
    own.eval(), handed.eval();
    CHECK(same(own.forward(input, b.masks), handed.forward(input, b.masks, b.fill)));
  }
  // The fill is used as handed: another one gives another output.
  CHECK_FALSE(same(handed.forward(input, b.masks, b.fill * 0.5), y_handed));

  CHECK_THROWS_WITH_AS(handed.forward(input, b.masks, slice(b.fill, 0, 0, 2)),
                       doctest::Contains("fill [2, 3, 40, 40] does not match image [3, 3, 40, 40]"), Error);
  PConvUNetConfig plain = c;
  plain.fill = PConvUNetConfig::Fill::None;
  CHECK_THROWS_WITH_AS(PConvUNet(plain, 5).forward(input, b.masks, b.fill), doctest::Contains("has none"), Error);
}

TEST_CASE("train: with the loader's harmonic fill, logs and checkpoints equal the model's own fill, bit for bit; resume is exact") {
  auto options = [](const std::string& dir, int64_t steps, bool loader) {
    TrainOptions o = testing::tiny_train_options(dir, steps);
    o.fill = "harmonic";
    o.fill_in_loader = loader;
    return o;
  };
  Trainer own(options(testing::scratch_dir("train-fill-own"), 5, false)),
      loader(options(testing::scratch_dir("train-fill-loader"), 5, true));
  CHECK_FALSE(own.data().options().harmonic_fill);
  CHECK(loader.data().options().harmonic_fill);
  own.run();
  loader.run();
  const std::string a = own.options().out_dir, b = loader.options().out_dir;
  CHECK(testing::read_bytes(a + "/log.csv") == testing::read_bytes(b + "/log.csv"));
  CHECK(testing::read_bytes(a + "/val.csv") == testing::read_bytes(b + "/val.csv"));
  CHECK(testing::read_bytes(a + "/checkpoints/step-00000005.safetensors") ==
        testing::read_bytes(b + "/checkpoints/step-00000005.safetensors"));

  // 3 steps, a resume, 2 more: the same as 5 straight.
  const std::string split = testing::scratch_dir("train-fill-split");
  { Trainer(options(split, 3, true)).run(); }
  TrainOptions r = options(split, 5, true);
  r.size = r.batch = r.levels = r.width = 0;
  r.seed.reset();
  r.fill.clear();
  r.resume = r.out_dir;
  Trainer resumed(r);
  CHECK(resumed.data().options().harmonic_fill);
  resumed.run();
  CHECK(testing::read_bytes(r.out_dir + "/log.csv") == testing::read_bytes(b + "/log.csv"));
  CHECK(testing::read_bytes(r.out_dir + "/checkpoints/step-00000005.safetensors") ==
        testing::read_bytes(b + "/checkpoints/step-00000005.safetensors"));

  // A model without the fill leaves the loader's option off.
  TrainOptions none = testing::tiny_train_options(testing::scratch_dir("train-fill-none"), 1);
  CHECK_FALSE(Trainer(none).data().options().harmonic_fill);
}
