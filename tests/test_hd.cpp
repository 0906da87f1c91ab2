// Photos of any size (apps/inference/hd_strategy.h): hole boxes, crop regions and plans against
// hand-worked cases, and each strategy end to end against inference::inpaint run by hand on
// the crop or the scaled copy.
#include <doctest/doctest.h>

#include "apps/inference/hd_strategy.h"
#include "core/data/dataset.h"
#include "tests/test_util.h"

using namespace pconv;
using namespace pconv::inference;
using testing::random_image;

namespace {

PConvUNetConfig tiny(int64_t levels = 3, int64_t width = 4) {
  PConvUNetConfig c;
  c.levels = levels;
  c.width = width;
  return c;
}

void fill_holes(MaskImage& m, const Box& b) {
  for (int64_t y = b.y0; y < b.y1; ++y)
    for (int64_t x = b.x0; x < b.x1; ++x) m.set_hole(y, x);
}

ImageU8 crop(const ImageU8& img, const Box& b) {
  ImageU8 out;
  out.width = int(b.width()), out.height = int(b.height()), out.channels_in_file = 3;
  for (int64_t y = b.y0; y < b.y1; ++y)
    for (int64_t x = b.x0; x < b.x1; ++x)
      for (int c = 0; c < 3; ++c) out.rgb.push_back(img.rgb[size_t((y * img.width + x) * 3 + c)]);
  return out;
}

MaskImage crop(const MaskImage& m, const Box& b) {
  MaskImage out(b.height(), b.width());
  for (int64_t y = b.y0; y < b.y1; ++y)
    for (int64_t x = b.x0; x < b.x1; ++x) out.known[size_t((y - b.y0) * b.width() + x - b.x0)] = m.at(y, x);
  return out;
}

const uint8_t* pixel(const ImageU8& img, int64_t x, int64_t y) { return &img.rgb[size_t((y * img.width + x) * 3)]; }
bool same_pixel(const uint8_t* a, const uint8_t* b) { return a[0] == b[0] && a[1] == b[1] && a[2] == b[2]; }

// Known pixels of `out` are the input's bytes; returns how many hole pixels differ from it.
int64_t check_known_kept(const ImageU8& out, const ImageU8& in, const MaskImage& mask) {
  REQUIRE(out.width == in.width);
  REQUIRE(out.height == in.height);
  int64_t changed = 0;
  for (int64_t y = 0; y < in.height; ++y)
    for (int64_t x = 0; x < in.width; ++x) {
      const bool same = same_pixel(pixel(out, x, y), pixel(in, x, y));
      if (!mask.is_hole(y, x)) REQUIRE(same);
      else changed += !same;
    }
  return changed;
}

}  // namespace

TEST_CASE("hd: hole boxes are the bounding boxes of 8-connected hole regions") {
  MaskImage m(20, 30);
  CHECK(hole_boxes(m).empty());
  fill_holes(m, {3, 2, 7, 5});   // a block
  m.set_hole(5, 7);               // touches its corner diagonally: same region
  fill_holes(m, {20, 10, 21, 16});  // a vertical bar ...
  fill_holes(m, {20, 15, 26, 16});  // ... with a foot: one L-shaped region
  m.set_hole(19, 29);             // a lone pixel in the corner
  const std::vector<Box> want{{3, 2, 8, 6}, {20, 10, 26, 16}, {29, 19, 30, 20}};
  CHECK(hole_boxes(m) == want);
  CHECK(hole_boxes(MaskImage(4, 5, 0.0f)) == std::vector<Box>{{0, 0, 5, 4}});
}

TEST_CASE("hd: crop regions grow by the margin, round up to the unit and shift inward at the borders") {
  CHECK(crop_region({100, 100, 120, 110}, 10, 1, 1000, 800) == Box{90, 90, 130, 120});
  // 40×30 with the margin, rounded up to 64×64 around the same centre.
  CHECK(crop_region({100, 100, 120, 110}, 10, 64, 1000, 800) == Box{78, 73, 142, 137});
  // Shifted inward: the margin that does not fit on one side is taken on the other.
  CHECK(crop_region({0, 0, 10, 10}, 20, 1, 1000, 800) == Box{0, 0, 50, 50});
  CHECK(crop_region({990, 790, 1000, 800}, 20, 1, 1000, 800) == Box{950, 750, 1000, 800});
  // Never larger than the photo: 140 → 192 px wide does not fit in 100; 70 → 128 px high does.
  CHECK(crop_region({10, 10, 90, 20}, 30, 64, 100, 500) == Box{0, 0, 100, 128});
}

TEST_CASE("hd: plans follow IOPaint's triggers; overlapping crops merge") {
  HdOptions crop;  // IOPaint's defaults: crop above 800, margin 128
  MaskImage small(600, 800);
  fill_holes(small, {10, 10, 20, 20});
  auto passes = plan_passes(small, crop, 1);
  REQUIRE(passes.size() == 1);  // 800 is not above the trigger: the whole photo
  CHECK(passes[0].region == Box{0, 0, 800, 600});
  CHECK(passes[0].pass_width == 800);

  MaskImage big(1000, 2000);
  CHECK(plan_passes(big, crop, 1).empty());  // no hole: nothing to run
  fill_holes(big, {100, 100, 300, 150});
  fill_holes(big, {1500, 800, 1600, 900});
  passes = plan_passes(big, crop, 1);
  REQUIRE(passes.size() == 2);
  CHECK(passes[0].region == Box{0, 0, 456, 306});  // shifted inward from [-28, 428) × [-28, 278)
  CHECK(passes[1].region == Box{1372, 644, 1728, 1000});
  CHECK(passes[1].pass_width == 356);
  // A third hole near the first: the two crops overlap and their union costs less.
  fill_holes(big, {400, 100, 420, 150});
  passes = plan_passes(big, crop, 1);
  REQUIRE(passes.size() == 2);
  CHECK(passes[0].region == Box{0, 0, 548, 306});

  HdOptions resize;
  resize.strategy = HdStrategy::Resize;
  passes = plan_passes(big, resize, 1);
  REQUIRE(passes.size() == 1);
  CHECK(passes[0].region == Box{0, 0, 2000, 1000});
  CHECK((passes[0].pass_width == 1280 && passes[0].pass_height == 640));
  resize.resize_limit = 2000;  // not above the limit: the photo as it is
  CHECK(plan_passes(big, resize, 1)[0].pass_width == 2000);

  HdOptions original;
  original.strategy = HdStrategy::Original;
  CHECK(plan_passes(big, original, 1)[0].pass_width == 2000);

  HdOptions bad;
  bad.crop_margin = -1;
  CHECK_THROWS_WITH_AS(plan_passes(big, bad, 1), "the crop margin must be >= 0, got -1", Error);
  CHECK(parse_hd_strategy("Crop") == HdStrategy::Crop);
  CHECK(parse_hd_strategy("RESIZE") == HdStrategy::Resize);
  CHECK(parse_hd_strategy("original") == HdStrategy::Original);
  CHECK_THROWS_WITH_AS(parse_hd_strategy("Tile"), "unknown HD strategy 'Tile' (use Crop, Resize or Original)", Error);
}

TEST_CASE("hd: many scattered holes become one crop around them all") {
  MaskImage m(900, 900);
  for (int64_t i = 0; i < 100; ++i) m.set_hole(100 + (i % 10) * 60, 100 + (i / 10) * 60);
  HdOptions crop;
  crop.crop_margin = 8;
  const auto passes = plan_passes(m, crop, 1);
  REQUIRE(passes.size() == 1);
  CHECK(passes[0].region == Box{92, 92, 649, 649});
}

TEST_CASE("hd: crop inpaints each region at full size and leaves the rest of the photo alone") {
  PConvUNet net(tiny(), 3);
  const ImageU8 img = random_image(300, 200, 4);
  MaskImage mask(200, 300);
  fill_holes(mask, {20, 30, 40, 45});
  fill_holes(mask, {250, 150, 270, 160});
  HdOptions options;
  options.crop_trigger_size = 100;
  options.crop_margin = 8;
  const auto passes = plan_passes(mask, options, 8);
  REQUIRE(passes.size() == 2);
  const Inpainted out = inpaint_any_size(net, img, mask, options, true);
  CHECK(check_known_kept(out.composite, img, mask) > 0);
  for (const Pass& p : passes) {
    const Inpainted part = inpaint(net, crop(img, p.region), crop(mask, p.region), true);
    for (int64_t y = p.region.y0; y < p.region.y1; ++y)
      for (int64_t x = p.region.x0; x < p.region.x1; ++x) {
        REQUIRE(same_pixel(pixel(out.composite, x, y), pixel(part.composite, x - p.region.x0, y - p.region.y0)));
        REQUIRE(same_pixel(pixel(out.raw, x, y), pixel(part.raw, x - p.region.x0, y - p.region.y0)));
      }
  }
  // Outside the regions the raw output is the input.
  CHECK(same_pixel(pixel(out.raw, 150, 100), pixel(img, 150, 100)));
  // Below the trigger the same call is one whole-image pass.
  options.crop_trigger_size = 300;
  CHECK(inpaint_any_size(net, img, mask, options).composite.rgb == inpaint(net, img, mask).composite.rgb);
}

TEST_CASE("hd: resize inpaints a scaled copy and pastes only the holes") {
  PConvUNet net(tiny(), 5);
  const ImageU8 img = random_image(400, 240, 6);
  MaskImage mask(240, 400);
  fill_holes(mask, {100, 100, 180, 140});
  mask.set_hole(7, 397);  // one pixel: its small pixel must be a hole too
  HdOptions options;
  options.strategy = HdStrategy::Resize;
  options.resize_limit = 100;
  const Inpainted out = inpaint_any_size(net, img, mask, options);
  CHECK(check_known_kept(out.composite, img, mask) > 0);
  // By hand: 100×60, holes wherever a footprint has one, inpaint, scale back, paste holes.
  MaskImage small(60, 100);
  fill_holes(small, {25, 25, 45, 35});
  small.set_hole(1, 99);
  const Inpainted part = inpaint(net, resize_image(img, 100, 60), small);
  const ImageU8 up = resize_image(part.composite, 400, 240);
  for (int64_t y = 0; y < 240; ++y)
    for (int64_t x = 0; x < 400; ++x)
      if (mask.is_hole(y, x)) REQUIRE(same_pixel(pixel(out.composite, x, y), pixel(up, x, y)));
}

TEST_CASE("hd: original is one whole pass; RGBA keeps its alpha; no hole returns the input; cancelling stops") {
  PConvUNet net(tiny(), 7);
  ImageU8 img = random_image(90, 50, 8);
  img.channels_in_file = 4;
  for (size_t i = 0; i < 90 * 50; ++i) img.alpha.push_back(uint8_t(i * 31));
  MaskImage mask(50, 90);
  fill_holes(mask, {10, 10, 30, 20});
  for (HdStrategy s : {HdStrategy::Original, HdStrategy::Crop, HdStrategy::Resize}) {
    CAPTURE(hd_strategy_name(s));
    HdOptions options;
    options.strategy = s;
    options.crop_trigger_size = options.resize_limit = 64;
    const Inpainted out = inpaint_any_size(net, img, mask, options);
    CHECK(out.composite.alpha == img.alpha);
    CHECK(check_known_kept(out.composite, img, mask) > 0);
    const ImageU8 decoded = decode_image_u8(encode_png(out.composite), "png", kMaxImagePixels, ImageAlpha::Keep);
    CHECK(decoded.channels_in_file == 4);
    CHECK(decoded.alpha == img.alpha);
    CHECK(decoded.rgb == out.composite.rgb);
    CHECK(inpaint_any_size(net, img, MaskImage(50, 90), options).composite.rgb == img.rgb);
    CHECK_THROWS_AS(inpaint_any_size(net, img, mask, options, false, [] { return true; }), Cancelled);
  }
  HdOptions original;
  original.strategy = HdStrategy::Original;
  CHECK(inpaint_any_size(net, img, mask, original).composite.rgb == inpaint(net, img, mask).composite.rgb);
  CHECK_THROWS_WITH_AS(inpaint_any_size(net, img, MaskImage(50, 91), original), "the mask is 91×50, the image 90×50",
                       Error);
}
