#include "apps/inference/hd_strategy.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "core/data/dataset.h"

namespace pconv::inference {

HdStrategy parse_hd_strategy(const std::string& name) {
  std::string s = name;
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (s == "crop") return HdStrategy::Crop;
  if (s == "resize") return HdStrategy::Resize;
  if (s == "original") return HdStrategy::Original;
  throw Error("unknown HD strategy '" + name + "' (use Crop, Resize or Original)");
}

const char* hd_strategy_name(HdStrategy strategy) {
  switch (strategy) {
    case HdStrategy::Crop: return "crop";
    case HdStrategy::Resize: return "resize";
    case HdStrategy::Original: return "original";
  }
  return "?";
}

void HdOptions::validate() const {
  if (crop_trigger_size < 1) throw Error("the crop trigger size must be >= 1, got " + std::to_string(crop_trigger_size));
  if (crop_margin < 0) throw Error("the crop margin must be >= 0, got " + std::to_string(crop_margin));
  if (resize_limit < 1) throw Error("the resize limit must be >= 1, got " + std::to_string(resize_limit));
}

bool whole_image_pass(const HdOptions& options, int64_t width, int64_t height) {
  const int64_t long_side = std::max(width, height);
  switch (options.strategy) {
    case HdStrategy::Crop: return long_side <= options.crop_trigger_size;
    case HdStrategy::Resize: return long_side <= options.resize_limit;
    case HdStrategy::Original: return true;
  }
  return true;
}

std::vector<Box> hole_boxes(const MaskImage& mask) {
  const int64_t H = mask.height, W = mask.width;
  std::vector<bool> seen(size_t(H * W), false);
  std::vector<int64_t> stack;
  std::vector<Box> boxes;
  for (int64_t start = 0; start < H * W; ++start) {
    if (seen[size_t(start)] || mask.known[size_t(start)] >= 0.5f) continue;
    // Flood fill over the 8 neighbours, growing the box.
    Box box{start % W, start / W, start % W + 1, start / W + 1};
    seen[size_t(start)] = true;
    stack.push_back(start);
    while (!stack.empty()) {
      const int64_t i = stack.back();
      stack.pop_back();
      const int64_t y = i / W, x = i % W;
      box = {std::min(box.x0, x), std::min(box.y0, y), std::max(box.x1, x + 1), std::max(box.y1, y + 1)};
      for (int64_t ny = std::max<int64_t>(y - 1, 0); ny <= std::min(y + 1, H - 1); ++ny)
        for (int64_t nx = std::max<int64_t>(x - 1, 0); nx <= std::min(x + 1, W - 1); ++nx) {
          const int64_t j = ny * W + nx;
          if (seen[size_t(j)] || mask.known[size_t(j)] >= 0.5f) continue;
          seen[size_t(j)] = true;
          stack.push_back(j);
        }
    }
    boxes.push_back(box);
  }
  return boxes;
}

namespace {

// One axis of crop_region: [a, b) grown, rounded up, shifted inside [0, size).
std::pair<int64_t, int64_t> crop_span(int64_t a, int64_t b, int64_t margin, int64_t unit, int64_t size) {
  a -= margin;
  b += margin;
  const int64_t extra = (b - a + unit - 1) / unit * unit - (b - a);
  a -= extra / 2;
  b += extra - extra / 2;
  if (b - a >= size) return {0, size};
  if (a < 0) b -= a, a = 0;
  if (b > size) a -= b - size, b = size;
  return {a, b};
}

Box bounding(const Box& a, const Box& b) {
  return {std::min(a.x0, b.x0), std::min(a.y0, b.y0), std::max(a.x1, b.x1), std::max(a.y1, b.y1)};
}

bool overlap(const Box& a, const Box& b) {
  return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
}

// Merges overlapping regions while the union costs no more than the two apart; with very many
// regions (speckled masks) one region around all holes replaces them.
std::vector<Box> merge_regions(std::vector<Box> regions, const Box& all_holes, int64_t margin, int64_t unit,
                               int64_t width, int64_t height) {
  constexpr size_t kMaxRegions = 64;
  for (bool merged = regions.size() <= 4 * kMaxRegions; merged;) {
    merged = false;
    for (size_t i = 0; i < regions.size() && !merged; ++i)
      for (size_t j = i + 1; j < regions.size() && !merged; ++j) {
        const Box u = bounding(regions[i], regions[j]);
        if (overlap(regions[i], regions[j]) && u.area() <= regions[i].area() + regions[j].area()) {
          regions[i] = u;
          regions.erase(regions.begin() + std::ptrdiff_t(j));
          merged = true;
        }
      }
  }
  int64_t total = 0;
  for (const Box& r : regions) total += r.area();
  if (regions.size() > kMaxRegions || total > width * height)
    return {crop_region(all_holes, margin, unit, width, height)};
  return regions;
}

ImageU8 crop_image(const ImageU8& img, const Box& b) {
  ImageU8 out;
  out.width = int(b.width());
  out.height = int(b.height());
  out.channels_in_file = 3;
  out.rgb.resize(size_t(b.area()) * 3);
  for (int64_t y = 0; y < b.height(); ++y)
    std::copy_n(&img.rgb[size_t(((b.y0 + y) * img.width + b.x0) * 3)], size_t(b.width()) * 3,
                &out.rgb[size_t(y * b.width() * 3)]);
  return out;
}

MaskImage crop_mask(const MaskImage& mask, const Box& b) {
  MaskImage out(b.height(), b.width());
  for (int64_t y = 0; y < b.height(); ++y)
    std::copy_n(&mask.known[size_t((b.y0 + y) * mask.width + b.x0)], size_t(b.width()),
                &out.known[size_t(y * b.width())]);
  return out;
}

// A hole wherever any pixel of the footprint is a hole, so the small pass fills at least
// every place a full-size hole pixel will read from.
MaskImage shrink_mask(const MaskImage& mask, int64_t out_h, int64_t out_w) {
  MaskImage out(out_h, out_w);
  auto span = [](int64_t o, int64_t in, int64_t n) {
    const int64_t a = o * in / n, b = ((o + 1) * in + n - 1) / n;
    return std::pair{a, std::max(b, a + 1)};
  };
  for (int64_t oy = 0; oy < out_h; ++oy) {
    const auto [y0, y1] = span(oy, mask.height, out_h);
    for (int64_t ox = 0; ox < out_w; ++ox) {
      const auto [x0, x1] = span(ox, mask.width, out_w);
      bool hole = false;
      for (int64_t y = y0; y < y1 && !hole; ++y)
        for (int64_t x = x0; x < x1 && !hole; ++x) hole = mask.is_hole(y, x);
      if (hole) out.set_hole(oy, ox);
    }
  }
  return out;
}

// Copies `part` (the size of `region`) into `dst` at `region`: every pixel, or the holes only.
void paste(ImageU8& dst, const ImageU8& part, const Box& region, const MaskImage* holes_only) {
  for (int64_t y = 0; y < region.height(); ++y)
    for (int64_t x = 0; x < region.width(); ++x) {
      if (holes_only && !holes_only->is_hole(region.y0 + y, region.x0 + x)) continue;
      const size_t d = size_t(((region.y0 + y) * dst.width + region.x0 + x) * 3);
      const size_t s = size_t((y * region.width() + x) * 3);
      for (size_t c = 0; c < 3; ++c) dst.rgb[d + c] = part.rgb[s + c];
    }
}

}  // namespace

Box crop_region(const Box& hole, int64_t margin, int64_t unit, int64_t width, int64_t height) {
  const auto [x0, x1] = crop_span(hole.x0, hole.x1, margin, std::max<int64_t>(unit, 1), width);
  const auto [y0, y1] = crop_span(hole.y0, hole.y1, margin, std::max<int64_t>(unit, 1), height);
  return {x0, y0, x1, y1};
}

std::vector<Pass> plan_passes(const MaskImage& mask, const HdOptions& options, int64_t unit) {
  options.validate();
  const int64_t W = mask.width, H = mask.height, long_side = std::max(W, H);
  const Box whole{0, 0, W, H};
  if (hole_ratio(mask) == 0.0) return {};
  if (whole_image_pass(options, W, H)) return {{whole, W, H}};
  if (options.strategy == HdStrategy::Crop) {
    const std::vector<Box> holes = hole_boxes(mask);
    Box all = holes[0];
    std::vector<Box> regions;
    for (const Box& b : holes) {
      all = bounding(all, b);
      regions.push_back(crop_region(b, options.crop_margin, unit, W, H));
    }
    std::vector<Pass> passes;
    for (const Box& r : merge_regions(regions, all, options.crop_margin, unit, W, H))
      passes.push_back({r, r.width(), r.height()});
    return passes;
  }
  // Resize
  const double scale = double(options.resize_limit) / double(long_side);
  const int64_t w = std::max<int64_t>(1, std::llround(double(W) * scale));
  const int64_t h = std::max<int64_t>(1, std::llround(double(H) * scale));
  return {{whole, w, h}};
}

Inpainted inpaint_any_size(PConvUNet& net, const ImageU8& image, const MaskImage& mask, const HdOptions& options,
                           bool want_raw, const std::function<bool()>& cancelled) {
  if (mask.width != image.width || mask.height != image.height)
    throw Error("the mask is " + std::to_string(mask.width) + "×" + std::to_string(mask.height) + ", the image " +
                std::to_string(image.width) + "×" + std::to_string(image.height));
  Inpainted result;
  result.composite = image;  // alpha included
  if (want_raw) result.raw = image;
  for (const Pass& pass : plan_passes(mask, options, int64_t(1) << net.config().levels)) {
    if (cancelled && cancelled()) throw Cancelled();
    const Box& region = pass.region;
    const bool whole = region == Box{0, 0, image.width, image.height};
    const bool scaled = pass.pass_width != region.width() || pass.pass_height != region.height();
    Inpainted part;
    if (whole && !scaled) {
      part = inpaint(net, image, mask, want_raw);
    } else {
      ImageU8 input = crop_image(image, region);
      MaskImage holes = crop_mask(mask, region);
      if (scaled) {
        input = resize_image(input, int(pass.pass_width), int(pass.pass_height));
        holes = shrink_mask(holes, pass.pass_height, pass.pass_width);
      }
      part = inpaint(net, input, holes, want_raw);
      if (scaled) {
        part.composite = resize_image(part.composite, int(region.width()), int(region.height()));
        if (want_raw) part.raw = resize_image(part.raw, int(region.width()), int(region.height()));
      }
    }
    // Only hole pixels change: the rest of `part` equals the input (or, scaled, nearly does).
    paste(result.composite, part.composite, region, &mask);
    if (want_raw) paste(result.raw, part.raw, region, nullptr);
  }
  return result;
}

MemoryCheck check_memory(const PConvUNetConfig& config, int64_t n, const std::vector<Pass>& passes,
                         int64_t limit_bytes) {
  MemoryCheck check;
  for (const Pass& p : passes)
    check.need = std::max(check.need, forward_memory_bytes(config, n, p.pass_height, p.pass_width));
  check.have = limit_bytes > 0 ? limit_bytes : available_memory_bytes();
  return check;
}

}  // namespace pconv::inference
