// pconv::Inpainter (apps/inference/inpainter.h), the embedding API: the pixels of the code the
// tools run (inference::inpaint_any_size on the same model) for every HD strategy, the byte
// buffer form equal to the image form, known pixels kept, the bundled model by default, and
// one-line errors for bad options, files and sizes.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>

#include "apps/inference/bundled_model.h"
#include "apps/inference/hd_strategy.h"
#include "apps/inference/inpainter.h"
#include "tests/test_util.h"

using namespace pconv;

namespace {

std::string tiny_model(const std::string& dir) {
  PConvUNetConfig c;
  c.levels = 3;
  c.width = 4;
  const std::string path = dir + "/tiny.safetensors";
  PConvUNet(c, 11).save_checkpoint(path);
  return path;
}

// Two holes far apart, so Crop makes two passes on a photo above its trigger size.
MaskImage two_holes(int64_t h, int64_t w) {
  MaskImage m(h, w);
  for (int64_t y = 4; y < 12; ++y)
    for (int64_t x = 5; x < 15; ++x) m.set_hole(y, x);
  for (int64_t y = h - 14; y < h - 6; ++y)
    for (int64_t x = w - 20; x < w - 9; ++x) m.set_hole(y, x);
  return m;
}

}  // namespace

TEST_CASE("inpainter: the tools' pixels for each HD strategy, and the byte form equals the image form") {
  const std::string model = tiny_model(testing::scratch_dir("inpainter_strategies"));
  const ImageU8 img = testing::random_image(96, 72, 3);
  const MaskImage mask = two_holes(72, 96);
  auto reference = inference::load_model(model);
  for (const char* strategy : {"crop", "resize", "original"}) {
    CAPTURE(strategy);
    InpainterOptions o;
    o.model = model;
    o.hd_strategy = strategy;
    o.crop_trigger_size = 64;  // so crop and resize act on this 96×72 photo
    o.crop_margin = 8;
    o.resize_limit = 48;
    Inpainter inpainter(o);
    CHECK(inpainter.model_path() == model);
    CHECK(inpainter.model_description() == reference->config().describe());
    inference::HdOptions hd;
    hd.strategy = inference::parse_hd_strategy(strategy);
    hd.crop_trigger_size = 64, hd.crop_margin = 8, hd.resize_limit = 48;
    const ImageU8 want = inference::inpaint_any_size(*reference, img, mask, hd).composite;
    const ImageU8 got = inpainter.inpaint(img, mask);
    CHECK(got.width == 96);
    CHECK(got.height == 72);
    CHECK(got.rgb == want.rgb);

    std::vector<uint8_t> holes(size_t(96 * 72));
    for (int64_t y = 0; y < 72; ++y)
      for (int64_t x = 0; x < 96; ++x) holes[size_t(y * 96 + x)] = mask.is_hole(y, x) ? 255 : 0;
    const std::vector<uint8_t> bytes = inpainter.inpaint(img.rgb.data(), 96, 72, holes.data());
    CHECK(bytes == want.rgb);
    int64_t changed = 0;
    for (size_t i = 0; i < holes.size(); ++i)
      for (size_t c = 0; c < 3; ++c) {
        if (!holes[i]) REQUIRE(bytes[i * 3 + c] == img.rgb[i * 3 + c]);
        else changed += bytes[i * 3 + c] != img.rgb[i * 3 + c];
      }
    CHECK(changed > 0);
  }
}

TEST_CASE("inpainter: without a model it loads the bundled one ($PCONV_MODEL here), and moves") {
  const std::string model = tiny_model(testing::scratch_dir("inpainter_default"));
  const char* old = std::getenv("PCONV_MODEL");
  const std::string saved = old ? old : "";
  setenv("PCONV_MODEL", model.c_str(), 1);
  Inpainter first;
  if (saved.empty()) unsetenv("PCONV_MODEL"); else setenv("PCONV_MODEL", saved.c_str(), 1);
  CHECK(first.model_path() == std::filesystem::canonical(model).string());
  CHECK(first.options().device == "cpu");
  Inpainter moved = std::move(first);
  const ImageU8 img = testing::random_image(40, 32, 8);
  CHECK(moved.inpaint(img, two_holes(32, 40)).rgb.size() == img.rgb.size());
}

TEST_CASE("inpainter: the real bundled model fills a hole (needs data/model/ beside this build)" *
          doctest::skip(bundled::find_model().empty())) {
  Inpainter inpainter;
  CHECK(std::filesystem::path(inpainter.model_path()).filename() == bundled::kFileName);
  const ImageU8 img = testing::random_image(64, 48, 2);
  const MaskImage mask = two_holes(48, 64);
  CHECK(inpainter.inpaint(img, mask).rgb != img.rgb);
}

TEST_CASE("inpainter: bad options, files and sizes are one-line errors") {
  const std::string dir = testing::scratch_dir("inpainter_errors");
  const std::string model = tiny_model(dir);
  auto options = [&](auto change) {
    InpainterOptions o;
    o.model = model;
    change(o);
    return o;
  };
  auto error = [](const InpainterOptions& o) { return testing::error_of([&] { Inpainter x(o); }); };
  CHECK(error(options([](InpainterOptions& o) { o.hd_strategy = "tile"; })).find("tile") != std::string::npos);
  CHECK(error(options([](InpainterOptions& o) { o.device = "tpu"; })) == "device 'tpu' is neither 'cpu' nor 'cuda'");
  CHECK(error(options([](InpainterOptions& o) { o.crop_margin = -1; })).find("crop margin") != std::string::npos);
  CHECK(error(options([](InpainterOptions& o) { o.memory_limit_gib = -1; })).find("memory_limit_gib") !=
        std::string::npos);
  CHECK(error(options([&](InpainterOptions& o) { o.model = dir + "/missing.safetensors"; }))
            .find(dir + "/missing.safetensors") != std::string::npos);

  Inpainter inpainter(options([](InpainterOptions&) {}));
  const ImageU8 img = testing::random_image(40, 32, 1);
  CHECK(testing::error_of([&] { inpainter.inpaint(img, MaskImage(30, 40)); }) == "the mask is 40×30, the image 40×32");
  std::vector<uint8_t> holes(40 * 32, 0);
  CHECK(testing::error_of([&] { inpainter.inpaint(img.rgb.data(), 0, 32, holes.data()); }).find("positive") !=
        std::string::npos);
  CHECK(testing::error_of([&] { inpainter.inpaint(nullptr, 40, 32, holes.data()); }) == "null image or hole buffer");
  // A photo whose pass needs more CPU memory than allowed is refused before the pass runs.
  Inpainter small(options([](InpainterOptions& o) { o.memory_limit_gib = 1e-6; }));
  const std::string e = testing::error_of([&] { small.inpaint(img, two_holes(32, 40)); });
  CHECK(e.find("needs about") != std::string::npos);
  CHECK(e.find("memory_limit_gib") != std::string::npos);
  CHECK(e.find('\n') == std::string::npos);
}
