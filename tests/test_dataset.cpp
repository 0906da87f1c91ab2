#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include "core/data/dataset.h"
#include "core/metrics/metrics.h"
#include "tests/test_util.h"

using namespace pconv;

namespace {

// A w×h image with a distinct, non-symmetric pattern per seed (so crops and flips can be told apart).
ImageU8 pattern(int w, int h, int seed) {
  ImageU8 img;
  img.width = w, img.height = h, img.channels_in_file = 3;
  img.rgb.resize(size_t(w * h * 3));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        img.rgb[size_t((y * w + x) * 3 + c)] = uint8_t((x * 7 + y * 13 + c * 50 + seed * 37 + x * y * (seed + 1)) % 256);
  return img;
}

std::string make_folder(const std::string& name, const std::vector<std::pair<std::string, ImageU8>>& files) {
  const std::string dir = testing::scratch_dir(name);
  for (const auto& [file, img] : files) {
    std::filesystem::create_directories(std::filesystem::path(dir + "/" + file).parent_path());
    save_image(dir + "/" + file, img);
  }
  return dir;
}

bool same(const Tensor& a, const Tensor& b) { return a.to_float_vector() == b.to_float_vector(); }

// Whether `crop` (3×s×s) is a crop of `img`, mirrored or not.
bool is_crop_of(const Tensor& crop, const ImageU8& img, bool& flipped) {
  const int s = int(crop.size(1));
  for (int y = 0; y + s <= img.height; ++y)
    for (int x = 0; x + s <= img.width; ++x)
      for (bool f : {false, true})
        if (same(crop, crop_to_tensor(img, x, y, s, f))) return flipped = f, true;
  return false;
}

}  // namespace

TEST_CASE("dataset: image listing is recursive, filtered by extension and sorted") {
  const std::string dir = make_folder("dataset_list", {{"b.png", pattern(4, 4, 1)},
                                                       {"a/z.jpg", pattern(4, 4, 2)},
                                                       {"a/c.PNG", pattern(4, 4, 3)}});
  std::ofstream(dir + "/notes.txt") << "not an image";
  const auto files = list_images(dir);
  REQUIRE(files.size() == 3);
  CHECK(files[0] == dir + "/a/c.PNG");
  CHECK(files[1] == dir + "/a/z.jpg");
  CHECK(files[2] == dir + "/b.png");
  CHECK(file_stem(files[1]) == "z");
  CHECK_THROWS_AS(list_images(dir + "/missing"), Error);
}

TEST_CASE("dataset: resize is bilinear up, area average down, identity at the same size") {
  ImageU8 img = pattern(4, 2, 0);
  const ImageU8 down = resize_image(img, 2, 1);
  for (int x = 0; x < 2; ++x)
    for (int c = 0; c < 3; ++c) {
      double s = 0;
      for (int dy = 0; dy < 2; ++dy)
        for (int dx = 0; dx < 2; ++dx) s += img.rgb[size_t(((dy * 4) + 2 * x + dx) * 3 + c)];
      CHECK(int(down.rgb[size_t(x * 3 + c)]) == int(std::lround(s / 4)));
    }
  const ImageU8 up = resize_image(img, 7, 5);
  CHECK(up.width == 7);
  CHECK(up.height == 5);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 7; ++x) {
      // Bilinear at pixel centres with clamped edges, computed directly.
      const double sx = std::clamp((x + 0.5) * 4 / 7 - 0.5, 0.0, 3.0), sy = std::clamp((y + 0.5) * 2 / 5 - 0.5, 0.0, 1.0);
      const int x0 = int(sx), y0 = int(sy), x1 = std::min(x0 + 1, 3), y1 = std::min(y0 + 1, 1);
      const double fx = sx - x0, fy = sy - y0;
      for (int c = 0; c < 3; ++c) {
        auto p = [&](int yy, int xx) { return double(img.rgb[size_t((yy * 4 + xx) * 3 + c)]); };
        const double v = (1 - fy) * ((1 - fx) * p(y0, x0) + fx * p(y0, x1)) + fy * ((1 - fx) * p(y1, x0) + fx * p(y1, x1));
        CHECK(std::abs(int(up.rgb[size_t((y * 7 + x) * 3 + c)]) - v) <= 0.5 + 1e-3);
      }
    }
  CHECK(resize_image(img, 4, 2).rgb == img.rgb);
  CHECK_THROWS_AS(resize_image(img, 0, 2), Error);
}

TEST_CASE("dataset: crops and flips") {
  const ImageU8 img = pattern(6, 5, 4);
  const Tensor c = crop_to_tensor(img, 2, 1, 3, false), f = crop_to_tensor(img, 2, 1, 3, true);
  for (int ch = 0; ch < 3; ++ch)
    for (int y = 0; y < 3; ++y)
      for (int x = 0; x < 3; ++x) {
        CHECK(c.at({ch, y, x}) == doctest::Approx(img.rgb[size_t(((1 + y) * 6 + 2 + x) * 3 + ch)] / 255.0).epsilon(1e-7));
        CHECK(f.at({ch, y, x}) == c.at({ch, y, 2 - x}));
      }
  CHECK_THROWS_AS(crop_to_tensor(img, 4, 0, 3, false), Error);
}

TEST_CASE("dataset: state strings round trip and reject garbage") {
  const DatasetState s{42, 3, 17};
  CHECK(s.to_string() == "seed=42 epoch=3 position=17");
  CHECK(DatasetState::parse(s.to_string()) == s);
  CHECK_THROWS_AS(DatasetState::parse("seed=1 epoch=2"), Error);
  CHECK_THROWS_AS(DatasetState::parse("seed=1 epoch=-2 position=0"), Error);
  CHECK_THROWS_AS(DatasetState::parse("seed=1 epoch=2 position=3 more"), Error);
}

TEST_CASE("dataset: batches are crops with flips, masks binary, reproducible, and resumable") {
  std::vector<std::pair<std::string, ImageU8>> files;
  for (int i = 0; i < 4; ++i) files.push_back({"img" + std::to_string(i) + ".png", pattern(30 + i, 22, i)});
  const std::string dir = make_folder("dataset_stream", files);
  DatasetOptions opt;
  opt.image_dir = dir, opt.size = 16, opt.batch = 3, opt.seed = 5;

  TrainingData a(opt);
  REQUIRE(a.samples_per_epoch() == 4);
  std::vector<Batch> batches;
  for (int i = 0; i < 5; ++i) batches.push_back(a.next());
  CHECK(batches[0].images.shape() == Shape{3, 3, 16, 16});
  CHECK(batches[0].masks.shape() == Shape{3, 1, 16, 16});
  CHECK(batches[1].next == DatasetState{5, 1, 2});  // 6 samples = one epoch of 4 and 2
  CHECK(a.state() == batches[4].next);

  // Every sample is a crop of one of the files; over 15 samples both flips occur and each
  // epoch visits every file once.
  int flips = 0, crops = 0;
  for (int64_t s = 0; s < 8; ++s) {
    Tensor img;
    MaskImage mask;
    a.sample(s / 4, s % 4, img, mask);
    const auto order = a.epoch_order(s / 4);
    bool flipped = false;
    crops += is_crop_of(img, files[size_t(order[size_t(s % 4)])].second, flipped);
    flips += flipped;
    for (float v : mask.known) REQUIRE((v == 0.0f || v == 1.0f));
    CHECK(hole_ratio(mask) >= 0.01);
    CHECK(hole_ratio(mask) < 0.7);
  }
  CHECK(crops == 8);
  CHECK(flips > 0);
  CHECK(flips < 8);
  CHECK(a.epoch_order(0) != a.epoch_order(1));

  // The queue delivers what sample() computes.
  Tensor img;
  MaskImage mask;
  a.sample(0, 1, img, mask);
  const std::vector<float> one = img.to_float_vector(), batch0 = batches[0].images.to_float_vector();
  CHECK(std::equal(one.begin(), one.end(), batch0.begin() + 3 * 16 * 16));

  // Several decoding threads, and a cache of decoded photos, make the same batches (5 batches
  // of 3 cover the 4 photos several times, so the cache is read).
  DatasetOptions parallel = opt;
  parallel.workers = 4;
  parallel.cache_bytes = int64_t(1) << 20;
  TrainingData w(parallel);
  for (int i = 0; i < 5; ++i) {
    Batch x = w.next();
    CHECK(same(x.images, batches[size_t(i)].images));
    CHECK(same(x.masks, batches[size_t(i)].masks));
    CHECK(x.next == batches[size_t(i)].next);
  }

  // Same seed, same stream; another seed, another stream.
  TrainingData b(opt);
  for (int i = 0; i < 5; ++i) {
    Batch x = b.next();
    CHECK(same(x.images, batches[size_t(i)].images));
    CHECK(same(x.masks, batches[size_t(i)].masks));
  }
  DatasetOptions other = opt;
  other.seed = 6;
  TrainingData c(other);
  CHECK_FALSE(same(c.next().images, batches[0].images));

  // Resume from a saved state string, in a new instance and in place.
  TrainingData d(opt, DatasetState::parse(batches[1].next.to_string()));
  CHECK(same(d.next().images, batches[2].images));
  CHECK(same(d.next().masks, batches[3].masks));
  d.restore(batches[0].next);
  CHECK(same(d.next().images, batches[1].images));
  CHECK_THROWS_AS(d.restore(DatasetState{6, 0, 0}), Error);
  CHECK_THROWS_AS(d.restore(DatasetState{5, 0, 4}), Error);
}

TEST_CASE("dataset: small photos are enlarged, large ones optionally rescaled, masks from files augmented") {
  const ImageU8 small = pattern(10, 12, 1);
  const std::string dir = make_folder("dataset_small", {{"small.png", small}});
  DatasetOptions opt;
  opt.image_dir = dir, opt.size = 16, opt.batch = 2, opt.seed = 1;
  TrainingData t(opt);
  Tensor img;
  MaskImage mask;
  t.sample(0, 0, img, mask);
  bool flipped = false;
  CHECK(is_crop_of(img, resize_image(small, 16, 19), flipped));  // short side 10 → 16

  const ImageU8 large = pattern(80, 64, 2);
  const std::string mask_dir = testing::scratch_dir("dataset_masks");
  save_mask(mask_dir + "/m0.png", generate_mask(40, 40, 3, 0, {0.1, 0.2}));
  DatasetOptions big = opt;
  big.image_dir = make_folder("dataset_large", {{"large.png", large}});
  big.max_short_side = 32;
  big.mask_dir = mask_dir;
  TrainingData l(big);
  for (int i = 0; i < 4; ++i) {
    Batch b = l.next();
    for (float v : b.masks.to_float_vector()) REQUIRE((v == 0.0f || v == 1.0f));
    // A crop of the photo at full scale would show its fine pattern; rescaled crops do not
    // match any full-scale crop.
    const std::vector<float> values = b.images.to_float_vector();
    for (int64_t n = 0; n < 2; ++n) {
      const Tensor one = Tensor::from_vector(
          std::vector<float>(values.begin() + n * 768, values.begin() + (n + 1) * 768), {3, 16, 16});
      CHECK_FALSE(is_crop_of(one, large, flipped));
    }
  }
}

TEST_CASE("dataset: extreme aspect ratios are cut to 4:1 before scaling, so crops stay cheap") {
  std::mt19937_64 rng(5);
  for (const auto& size : {std::pair{8192, 2}, std::pair{2, 8192}, std::pair{4000, 7}}) {
    CAPTURE(size.first);
    CAPTURE(size.second);
    const ImageU8 photo = pattern(size.first, size.second, 3);
    ImageU8 storage;
    const ImageU8& fit = fit_for_crop(photo, 64, 0, rng, storage);
    // Without the cut an 8192×2 photo would be enlarged to 262144×64.
    CHECK(std::min(fit.width, fit.height) == 64);
    CHECK(std::max(fit.width, fit.height) <= kMaxAspectRatio * 64);
  }
  // The window is a part of the photo, at full resolution when no scaling is needed.
  const ImageU8 strip = pattern(100, 10, 4);
  ImageU8 storage;
  const ImageU8& fit = fit_for_crop(strip, 8, 0, rng, storage);
  REQUIRE(fit.width == 40);
  REQUIRE(fit.height == 10);
  bool found = false;
  for (int x = 0; x + 40 <= 100 && !found; ++x) found = cut_image(strip, x, 0, 40, 10).rgb == fit.rgb;
  CHECK(found);
  // Ordinary photos pass through untouched (no copy).
  const ImageU8 ordinary = pattern(30, 20, 5);
  CHECK(&fit_for_crop(ordinary, 16, 0, rng, storage) == &ordinary);
  CHECK_THROWS_AS(cut_image(strip, 70, 0, 40, 10), Error);

  // Through the training stream: a 2000×3 photo gives 16×16 crops.
  DatasetOptions opt;
  opt.size = 16, opt.batch = 2;
  opt.image_dir = make_folder("dataset_strip", {{"strip.png", pattern(2000, 3, 6)}});
  TrainingData t(opt);
  CHECK(t.next().images.shape() == Shape{2, 3, 16, 16});
}

TEST_CASE("dataset: empty folders fail at once, unreadable files are skipped and counted, mostly unreadable fails") {
  DatasetOptions opt;
  opt.size = 8, opt.batch = 2;
  opt.image_dir = testing::scratch_dir("dataset_empty");
  CHECK_THROWS_WITH_AS(TrainingData{opt}, (opt.image_dir + ": no images (jpg, jpeg, png, bmp, tga, gif, webp) in this folder").c_str(),
                       Error);

  // 2 unreadable photos of 5 (garbage, a truncated PNG): each warned about by name, counted,
  // skipped; the run goes on.
  const std::string png = encode_png(pattern(12, 12, 9));
  opt.image_dir = make_folder("dataset_bad", {{"a.png", pattern(12, 12, 0)}, {"b.png", pattern(12, 12, 1)},
                                              {"c.png", pattern(12, 12, 2)}});
  std::ofstream(opt.image_dir + "/bad.png") << "garbage";
  testing::write_bytes(opt.image_dir + "/cut.png", png.substr(0, png.size() / 2));
  std::stringstream warnings;
  std::streambuf* old_cerr = std::cerr.rdbuf(warnings.rdbuf());
  {
    TrainingData t(opt);
    for (int i = 0; i < 6; ++i) CHECK(t.next().images.shape() == Shape{2, 3, 8, 8});
    CHECK(t.unreadable_count() == 2);
  }
  std::cerr.rdbuf(old_cerr);
  const std::string w = warnings.str();
  INFO(w);
  CHECK(w.find("warning: skipping unreadable training photo (1 of 5 so far): " + opt.image_dir + "/") != std::string::npos);
  CHECK(w.find("(2 of 5 so far): ") != std::string::npos);
  CHECK(w.find(opt.image_dir + "/bad.png: not a readable image") != std::string::npos);
  CHECK(w.find(opt.image_dir + "/cut.png: not a readable image") != std::string::npos);
  CHECK(std::count(w.begin(), w.end(), '\n') == 2);  // once per file, not per epoch

  // 3 of 5 unreadable: more than half, the run stops and says why.
  std::ofstream(opt.image_dir + "/c.png") << "garbage too";
  old_cerr = std::cerr.rdbuf(warnings.rdbuf());
  std::string stopped;
  {
    TrainingData t(opt);
    try {
      for (int i = 0; i < 6; ++i) t.next();
    } catch (const Error& e) {
      stopped = e.what();
    }
  }
  std::cerr.rdbuf(old_cerr);
  CHECK(stopped.rfind(opt.image_dir + ": 3 of 5 training photos could not be read, more than half: stopping (the last: ",
                      0) == 0);

  opt.image_dir = testing::scratch_dir("dataset_all_bad");
  std::ofstream(opt.image_dir + "/bad.jpg") << "garbage";
  TrainingData all_bad(opt);
  CHECK_THROWS_AS(all_bad.next(), Error);
  opt.workers = 3;  // an error in a decoding thread reaches next() too
  TrainingData all_bad_parallel(opt);
  CHECK_THROWS_AS(all_bad_parallel.next(), Error);
}

TEST_CASE("dataset: the validation set is fixed and covers every hole-ratio bucket") {
  const std::string dir = testing::source_path("data/train");
  const auto v1 = make_validation_set(dir, 32, 9), v2 = make_validation_set(dir, 32, 9);
  REQUIRE(v1.size() == 6);
  std::vector<int> buckets;
  for (size_t i = 0; i < v1.size(); ++i) {
    CHECK(v1[i].image.shape() == Shape{3, 32, 32});
    CHECK(same(v1[i].image, v2[i].image));
    CHECK(v1[i].mask.known == v2[i].mask.known);
    buckets.push_back(hole_ratio_bucket(hole_ratio(v1[i].mask)));
  }
  CHECK(buckets == std::vector<int>{0, 1, 2, 3, 4, 5});
  CHECK(v1[0].name == "dragonfly");

  // With a mask folder, masks are read in turn and resized (nearest) to the crop size.
  const auto v3 = make_validation_set(dir, 64, 9, testing::source_path("data/masks"));
  const auto mask_files = list_images(testing::source_path("data/masks"));
  REQUIRE(!mask_files.empty());
  const MaskImage m0 = resize_nearest(load_mask(mask_files[0]).mask, 64, 64);
  CHECK(v3[0].mask.known == m0.known);
}
