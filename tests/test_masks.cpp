#include <doctest/doctest.h>

#include <stb_image_write.h>  // the implementation lives in core/io/image.cpp

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/data/masks.h"
#include "core/io/image.h"
#include "tests/test_util.h"

using namespace pconv;

namespace {
bool is_binary(const MaskImage& m) {
  for (float v : m.known)
    if (v != 0.0f && v != 1.0f) return false;
  return true;
}
}  // namespace

TEST_CASE("masks: generator is reproducible per (seed, index) and differs across them") {
  const MaskImage a = generate_mask(48, 40, 7, 3), b = generate_mask(48, 40, 7, 3);
  CHECK(a.height == 48);
  CHECK(a.width == 40);
  CHECK(a.known == b.known);
  CHECK(generate_mask(48, 40, 7, 4).known != a.known);
  CHECK(generate_mask(48, 40, 8, 3).known != a.known);
  CHECK(is_binary(a));
}

TEST_CASE("masks: 200 generated 64×64 masks spread over 1–60 % holes, each near its target") {
  int histogram[6] = {};
  double lo = 1, hi = 0;
  for (uint64_t i = 0; i < 200; ++i) {
    const double r = hole_ratio(generate_mask(64, 64, 2024, i));
    lo = std::min(lo, r), hi = std::max(hi, r);
    histogram[std::min(5, int(r * 10))]++;
  }
  MESSAGE("hole ratios in [" << lo << ", " << hi << "], histogram by tenths: " << histogram[0] << " "
                             << histogram[1] << " " << histogram[2] << " " << histogram[3] << " "
                             << histogram[4] << " " << histogram[5]);
  CHECK(lo >= 0.01);
  CHECK(lo < 0.05);
  CHECK(hi > 0.55);
  CHECK(hi < 0.68);  // the last shape may overshoot a little
  for (int b = 0; b < 6; ++b) CHECK(histogram[b] >= 15);  // uniform would be ~33 each
}

TEST_CASE("masks: explicit targets are reached with little overshoot, at several sizes") {
  for (const auto& size : {std::pair<int64_t, int64_t>{64, 64}, {37, 91}, {256, 128}}) {
    const int64_t h = size.first, w = size.second;
    for (double target : {0.02, 0.25, 0.55}) {
      std::mt19937_64 rng(uint64_t(h * 1000 + w) + uint64_t(target * 100));
      const double r = hole_ratio(generate_mask(h, w, target, rng));
      CHECK_MESSAGE((r >= target && r < target + 0.06), h << "×" << w << " target " << target << " got " << r);
    }
  }
  std::mt19937_64 rng(1);
  CHECK(hole_ratio(generate_mask(16, 16, 0.0, rng)) == 0.0);
  CHECK_THROWS_AS(generate_mask(16, 16, 0.99, rng), Error);
  CHECK_THROWS_AS(generate_mask(0, 16, 0.2, rng), Error);
}

TEST_CASE("masks: hole_ratio on masks and tensors, tensor round trip") {
  MaskImage m(4, 5);
  m.set_hole(0, 0), m.set_hole(3, 4), m.set_hole(2, 1);
  CHECK(hole_ratio(m) == doctest::Approx(3.0 / 20).epsilon(1e-15));
  Tensor t = mask_to_tensor(m);
  CHECK(t.shape() == Shape{1, 1, 4, 5});
  CHECK(t.at({0, 0, 3, 4}) == 0.0);
  CHECK(hole_ratio(t) == doctest::Approx(3.0 / 20).epsilon(1e-15));
  CHECK(mask_from_tensor(t).known == m.known);
  Tensor batch = masks_to_batch({m, MaskImage(4, 5)});
  CHECK(batch.shape() == Shape{2, 1, 4, 5});
  CHECK(hole_ratio(batch) == doctest::Approx(3.0 / 40).epsilon(1e-15));
  CHECK_THROWS_AS(masks_to_batch({m, MaskImage(5, 4)}), Error);
  CHECK_THROWS_AS(mask_from_tensor(Tensor::zeros({2, 4, 5})), Error);
}

TEST_CASE("masks: dilation by a disk matches a brute-force dilation") {
  const MaskImage m = generate_mask(30, 41, 5, 0, {0.02, 0.08});
  for (int64_t radius : {0, 1, 2, 4}) {
    const MaskImage d = dilate_holes(m, radius);
    for (int64_t y = 0; y < m.height; ++y)
      for (int64_t x = 0; x < m.width; ++x) {
        bool near = false;
        for (int64_t v = 0; v < m.height && !near; ++v)
          for (int64_t u = 0; u < m.width && !near; ++u)
            near = m.is_hole(v, u) && (v - y) * (v - y) + (u - x) * (u - x) <= radius * radius;
        REQUIRE_MESSAGE(d.is_hole(y, x) == near, "radius " << radius << " at " << y << "," << x);
      }
  }
}

TEST_CASE("masks: nearest resize keeps blocks and binarity") {
  MaskImage m(2, 3);
  m.set_hole(0, 1), m.set_hole(1, 2);
  const MaskImage r = resize_nearest(m, 4, 6);
  for (int64_t y = 0; y < 4; ++y)
    for (int64_t x = 0; x < 6; ++x) CHECK(r.is_hole(y, x) == m.is_hole(y / 2, x / 2));
  const MaskImage down = resize_nearest(r, 2, 3);
  CHECK(down.known == m.known);
}

TEST_CASE("masks: augmentation keeps masks binary, is seeded, and changes the mask") {
  const MaskImage m = generate_mask(64, 64, 11, 0, {0.2, 0.3});
  std::mt19937_64 r1(3), r2(3);
  int changed = 0;
  for (int i = 0; i < 20; ++i) {
    const MaskImage a = augment_mask(m, 48, 56, r1), b = augment_mask(m, 48, 56, r2);
    CHECK(a.known == b.known);
    CHECK(a.height == 48);
    CHECK(a.width == 56);
    CHECK(is_binary(a));
    changed += hole_ratio(a) != hole_ratio(resize_nearest(m, 48, 56));
  }
  CHECK(changed >= 15);
  // With every transformation off, augmentation is the identity.
  MaskAugmentOptions none;
  none.max_dilation = 0, none.max_rotation_degrees = 0, none.max_translation = 0, none.min_crop = 1;
  std::mt19937_64 r3(9);
  CHECK(augment_mask(m, 64, 64, r3, none).known == m.known);
  // Rotation alone leaves a centred disk (nearly) unchanged; translation alone shifts a single
  // hole pixel, so at most one hole remains.
  none.max_rotation_degrees = 180;
  MaskImage disk(41, 41);
  for (int64_t y = 0; y < 41; ++y)
    for (int64_t x = 0; x < 41; ++x)
      if ((y - 20) * (y - 20) + (x - 20) * (x - 20) <= 100) disk.set_hole(y, x);
  for (int i = 0; i < 5; ++i) {
    const MaskImage r = augment_mask(disk, 41, 41, r3, none);
    int64_t differ = 0;
    for (size_t k = 0; k < r.known.size(); ++k) differ += r.known[k] != disk.known[k];
    CHECK(differ <= 64);  // only boundary pixels (perimeter ≈ 63) may flip; the disk has 317
  }
  none.max_rotation_degrees = 0, none.max_translation = 0.3;
  MaskImage single(16, 16);
  single.set_hole(8, 8);
  for (int i = 0; i < 10; ++i) CHECK(hole_ratio(augment_mask(single, 16, 16, r3, none)) <= 1.0 / 256);
}

TEST_CASE("masks: files in either convention, grey levels thresholded at 50 % and reported") {
  const std::string dir = testing::scratch_dir("masks_files");
  const MaskImage m = generate_mask(20, 30, 1, 1);
  save_mask(dir + "/white.png", m, MaskHoles::White);
  save_mask(dir + "/black.png", m, MaskHoles::Black);
  const LoadedMask w = load_mask(dir + "/white.png", MaskHoles::White);
  CHECK(w.mask.known == m.known);
  CHECK_FALSE(w.had_grey_levels);
  CHECK(load_mask(dir + "/black.png", MaskHoles::Black).mask.known == m.known);
  // Reading with the wrong convention inverts it.
  const MaskImage inv = load_mask(dir + "/white.png", MaskHoles::Black).mask;
  CHECK(hole_ratio(inv) == doctest::Approx(1 - hole_ratio(m)).epsilon(1e-15));

  ImageU8 grey;
  grey.width = 4, grey.height = 1, grey.channels_in_file = 3;
  grey.rgb = {0, 0, 0, 127, 127, 127, 128, 128, 128, 255, 255, 255};
  save_image(dir + "/grey.png", grey);
  const LoadedMask g = load_mask(dir + "/grey.png", MaskHoles::White);
  CHECK(g.had_grey_levels);
  CHECK(g.mask.known == std::vector<float>{1, 1, 0, 0});
  CHECK(parse_mask_holes("black") == MaskHoles::Black);
  CHECK_THROWS_WITH_AS(parse_mask_holes("grey"), "mask holes: 'grey' is neither 'white' nor 'black'", Error);
  CHECK_THROWS_AS(load_mask(dir + "/missing.png"), Error);
}

TEST_CASE("masks: a mask painted on a transparent layer is read by its alpha, whatever the convention") {
  const std::string dir = testing::scratch_dir("masks_alpha");
  // 4×2 RGBA: the colour says the opposite of the alpha everywhere, so a reader that looked
  // at the colour would get every pixel wrong.
  const std::vector<uint8_t> alpha = {255, 0, 200, 100, 128, 127, 0, 255};
  std::vector<uint8_t> rgba;
  for (uint8_t a : alpha) {
    const uint8_t colour = a >= 128 ? 0 : 255;  // black paint on a white transparent layer
    rgba.insert(rgba.end(), {colour, colour, colour, a});
  }
  REQUIRE(stbi_write_png((dir + "/painted.png").c_str(), 4, 2, 4, rgba.data(), 16));
  const std::vector<float> expected = {0, 1, 0, 1, 0, 1, 1, 0};  // alpha >= 128 = painted = hole
  for (MaskHoles holes : {MaskHoles::White, MaskHoles::Black}) {
    const LoadedMask m = load_mask(dir + "/painted.png", holes);
    CHECK(m.read_by_alpha);
    CHECK(m.mask.known == expected);
    CHECK(m.had_grey_levels);  // 200, 100, 128, 127: thresholded at 50 %
    CHECK(m.channels_in_file == 4);
  }
  // Grey + alpha too; only 0 and 255 alpha: no grey levels.
  std::vector<uint8_t> grey_alpha = {0, 255, 255, 0, 0, 0, 255, 255};
  REQUIRE(stbi_write_png((dir + "/ga.png").c_str(), 4, 1, 2, grey_alpha.data(), 8));
  const LoadedMask ga = load_mask(dir + "/ga.png", MaskHoles::White);
  CHECK(ga.read_by_alpha);
  CHECK_FALSE(ga.had_grey_levels);
  CHECK(ga.mask.known == std::vector<float>{0, 1, 1, 0});
  // Entirely opaque RGBA: no transparency to go by, the colours decide as for RGB.
  std::vector<uint8_t> opaque = {255, 255, 255, 255, 0, 0, 0, 255};
  REQUIRE(stbi_write_png((dir + "/opaque.png").c_str(), 2, 1, 4, opaque.data(), 8));
  const LoadedMask o = load_mask(dir + "/opaque.png", MaskHoles::White);
  CHECK_FALSE(o.read_by_alpha);
  CHECK(o.mask.known == std::vector<float>{0, 1});
  CHECK(load_mask(dir + "/opaque.png", MaskHoles::Black).mask.known == std::vector<float>{1, 0});
  CHECK(alpha_mask_note("m.png").rfind("m.png has transparency: masks with alpha are read by it (painted = hole", 0) == 0);
}
