#include "apps/training/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace pconv {

namespace {

// 3×5 glyphs, one row per entry, bit 2 = left column.
struct Glyph {
  char c;
  uint8_t rows[5];
};
constexpr Glyph kFont[] = {
    {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}}, {'2', {7, 1, 7, 4, 7}}, {'3', {7, 1, 7, 1, 7}},
    {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 7, 1, 7}}, {'6', {7, 4, 7, 5, 7}}, {'7', {7, 1, 1, 1, 1}},
    {'8', {7, 5, 7, 5, 7}}, {'9', {7, 5, 7, 1, 7}}, {'a', {2, 5, 7, 5, 5}}, {'b', {6, 5, 6, 5, 6}},
    {'c', {3, 4, 4, 4, 3}}, {'d', {6, 5, 5, 5, 6}}, {'e', {7, 4, 6, 4, 7}}, {'f', {7, 4, 6, 4, 4}},
    {'g', {3, 4, 5, 5, 3}}, {'h', {5, 5, 7, 5, 5}}, {'i', {7, 2, 2, 2, 7}}, {'j', {1, 1, 1, 5, 2}},
    {'k', {5, 5, 6, 5, 5}}, {'l', {4, 4, 4, 4, 7}}, {'m', {5, 7, 7, 5, 5}}, {'n', {6, 5, 5, 5, 5}},
    {'o', {2, 5, 5, 5, 2}}, {'p', {6, 5, 6, 4, 4}}, {'q', {2, 5, 5, 6, 3}}, {'r', {6, 5, 6, 5, 5}},
    {'s', {3, 4, 2, 1, 6}}, {'t', {7, 2, 2, 2, 2}}, {'u', {5, 5, 5, 5, 7}}, {'v', {5, 5, 5, 5, 2}},
    {'w', {5, 5, 7, 7, 5}}, {'x', {5, 5, 2, 5, 5}}, {'y', {5, 5, 2, 2, 2}}, {'z', {7, 1, 2, 4, 7}},
    {'.', {0, 0, 0, 0, 2}}, {',', {0, 0, 0, 2, 4}}, {'-', {0, 0, 7, 0, 0}}, {'+', {0, 2, 7, 2, 0}},
    {'_', {0, 0, 0, 0, 7}}, {':', {0, 2, 0, 2, 0}}, {'/', {1, 1, 2, 4, 4}}, {'%', {5, 1, 2, 4, 5}},
    {'(', {1, 2, 2, 2, 1}}, {')', {4, 2, 2, 2, 4}}, {'=', {0, 7, 0, 7, 0}}, {' ', {0, 0, 0, 0, 0}},
    {'*', {0, 5, 2, 5, 0}},
};

const Glyph* find_glyph(char c) {
  if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  for (const Glyph& g : kFont)
    if (g.c == c) return &g;
  return nullptr;
}

void put_pixel(ImageU8& img, int x, int y, Rgb color) {
  if (x < 0 || y < 0 || x >= img.width || y >= img.height) return;
  uint8_t* p = &img.rgb[(size_t(y) * img.width + x) * 3];
  p[0] = color[0], p[1] = color[1], p[2] = color[2];
}

ImageU8 blank(int width, int height, Rgb color) {
  ImageU8 img;
  img.width = width, img.height = height, img.channels_in_file = 3;
  img.rgb.resize(size_t(width) * height * 3);
  for (size_t i = 0; i < img.rgb.size(); i += 3)
    img.rgb[i] = color[0], img.rgb[i + 1] = color[1], img.rgb[i + 2] = color[2];
  return img;
}

std::string format_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

// Tick positions at 1, 2 or 5 times a power of ten, about `count` of them over [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int count) {
  const double raw = (hi - lo) / std::max(count, 1);
  if (!(raw > 0)) return {lo};
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  double step = power;
  for (double f : {1.0, 2.0, 5.0, 10.0})
    if (f * power >= raw) {
      step = f * power;
      break;
    }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step)
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  return ticks;
}

}  // namespace

Rgb curve_color(size_t i) {
  static const Rgb palette[] = {{0, 0, 0},     {31, 119, 180}, {214, 39, 40},  {44, 160, 44},
                                {148, 103, 189}, {255, 127, 14}, {140, 86, 75}, {227, 119, 194},
                                {23, 190, 207}, {127, 127, 127}};
  return palette[i % (sizeof palette / sizeof palette[0])];
}

void fill_rect(ImageU8& img, int x0, int y0, int x1, int y1, Rgb color) {
  for (int y = std::max(y0, 0); y < std::min(y1, img.height); ++y)
    for (int x = std::max(x0, 0); x < std::min(x1, img.width); ++x) put_pixel(img, x, y, color);
}

void draw_line(ImageU8& img, int x0, int y0, int x1, int y1, Rgb color) {
  // Bresenham: every pixel of the line, no gaps at any slope.
  const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    put_pixel(img, x0, y0, color);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

int text_width(const std::string& text, int scale) { return int(text.size()) * 4 * scale; }

void draw_text(ImageU8& img, int x, int y, const std::string& text, Rgb color, int scale) {
  for (char c : text) {
    if (const Glyph* g = find_glyph(c))
      for (int r = 0; r < 5; ++r)
        for (int col = 0; col < 3; ++col)
          if (g->rows[r] & (4 >> col))
            fill_rect(img, x + col * scale, y + r * scale, x + (col + 1) * scale, y + (r + 1) * scale, color);
    x += 4 * scale;
  }
}

ImageU8 plot_curves(const std::vector<Curve>& curves, const PlotOptions& o) {
  const Rgb white{255, 255, 255}, black{0, 0, 0}, grid{225, 225, 225};
  ImageU8 img = blank(o.width, o.height, white);
  const int left = 80, right = o.width - 170, top = 34, bottom = o.height - 44;
  if (!o.title.empty()) draw_text(img, left, 10, o.title, black);

  auto usable = [&](double y) { return std::isfinite(y) && (!o.log_y || y > 0); };
  auto ty = [&](double y) { return o.log_y ? std::log10(y) : y; };
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
  for (const Curve& c : curves)
    for (size_t i = 0; i < c.x.size() && i < c.y.size(); ++i)
      if (usable(c.y[i]) && std::isfinite(c.x[i])) {
        x_lo = std::min(x_lo, c.x[i]), x_hi = std::max(x_hi, c.x[i]);
        y_lo = std::min(y_lo, ty(c.y[i])), y_hi = std::max(y_hi, ty(c.y[i]));
      }
  if (!std::isfinite(x_lo)) {
    draw_text(img, left, (top + bottom) / 2, "no data yet", black);
    return img;
  }
  if (x_hi <= x_lo) x_hi = x_lo + 1;
  if (y_hi <= y_lo) y_hi = y_lo + (o.log_y ? 1 : std::max(std::abs(y_lo), 1.0));
  if (o.log_y) y_lo = std::floor(y_lo), y_hi = std::ceil(y_hi);
  auto px = [&](double x) { return left + int(std::lround((x - x_lo) / (x_hi - x_lo) * (right - left))); };
  auto py = [&](double t) { return bottom - int(std::lround((t - y_lo) / (y_hi - y_lo) * (bottom - top))); };

  // Grid and tick labels.
  for (double t : nice_ticks(x_lo, x_hi, 8)) {
    draw_line(img, px(t), top, px(t), bottom, grid);
    const std::string label = format_number(t);
    draw_text(img, px(t) - text_width(label) / 2, bottom + 8, label, black);
  }
  std::vector<double> yticks;
  if (o.log_y)
    for (double e = y_lo; e <= y_hi + 1e-9; ++e) yticks.push_back(e);
  else
    yticks = nice_ticks(y_lo, y_hi, 6);
  for (double t : yticks) {
    draw_line(img, left, py(t), right, py(t), grid);
    const std::string label = format_number(o.log_y ? std::pow(10.0, t) : t);
    draw_text(img, left - 6 - text_width(label), py(t) - 5, label, black);
  }
  draw_line(img, left, top, left, bottom, black);
  draw_line(img, left, bottom, right, bottom, black);
  draw_text(img, (left + right - text_width(o.x_label)) / 2, bottom + 26, o.x_label, black);

  for (size_t ci = 0; ci < curves.size(); ++ci) {
    const Curve& c = curves[ci];
    // Average the points of each pixel column, so the line shows the trend, not the noise.
    std::vector<double> sum(size_t(right - left + 1), 0.0);
    std::vector<int> count(sum.size(), 0);
    for (size_t i = 0; i < c.x.size() && i < c.y.size(); ++i) {
      if (!usable(c.y[i]) || !std::isfinite(c.x[i])) continue;
      const size_t col = size_t(px(c.x[i]) - left);
      sum[col] += ty(c.y[i]), ++count[col];
    }
    auto polyline = [&](const std::vector<double>& values, const std::vector<int>& present, Rgb color) {
      int last_x = -1, last_y = 0;
      for (size_t col = 0; col < values.size(); ++col) {
        if (!present[col]) continue;
        const int x = left + int(col), y = py(values[col]);
        if (last_x >= 0) draw_line(img, last_x, last_y, x, y, color);
        else fill_rect(img, x - 1, y - 1, x + 2, y + 2, color);  // a lone first point stays visible
        last_x = x, last_y = y;
      }
    };
    std::vector<double> mean(sum.size(), 0.0);
    for (size_t col = 0; col < sum.size(); ++col)
      if (count[col] > 0) mean[col] = sum[col] / count[col];
    if (o.smooth <= 0) {
      polyline(mean, count, c.color);
    } else {
      Rgb faded;
      for (int k = 0; k < 3; ++k) faded[k] = uint8_t(255 - (255 - c.color[k]) * 3 / 10);
      polyline(mean, count, faded);
      std::vector<double> smooth(sum.size(), 0.0);
      for (size_t col = 0; col < sum.size(); ++col) {
        if (count[col] == 0) continue;
        double s = 0;
        int n = 0;
        for (int64_t j = int64_t(col) - o.smooth; j <= int64_t(col) + o.smooth; ++j)
          if (j >= 0 && j < int64_t(sum.size()) && count[size_t(j)] > 0) s += mean[size_t(j)], ++n;
        smooth[col] = s / n;
      }
      polyline(smooth, count, c.color);
    }
    const int ly = top + 6 + int(ci) * 18;
    fill_rect(img, right + 14, ly + 3, right + 34, ly + 6, c.color);
    draw_text(img, right + 40, ly, c.name, black);
  }
  return img;
}

ImageU8 sample_grid(const std::vector<SampleRow>& rows) {
  constexpr int kGap = 4, kColumns = 5;
  const Rgb grey{128, 128, 128};
  if (rows.empty()) return blank(1, 1, grey);
  const int h = int(rows[0].ground_truth.size(1)), w = int(rows[0].ground_truth.size(2));
  ImageU8 img = blank(kColumns * w + (kColumns + 1) * kGap, int(rows.size()) * (h + kGap) + kGap, grey);
  auto paste = [&](const ImageU8& tile, int row, int column) {
    const int x0 = kGap + column * (w + kGap), y0 = kGap + row * (h + kGap);
    for (int y = 0; y < tile.height && y < h; ++y)
      for (int x = 0; x < tile.width && x < w; ++x) {
        const uint8_t* p = &tile.rgb[(size_t(y) * tile.width + x) * 3];
        put_pixel(img, x0 + x, y0 + y, {p[0], p[1], p[2]});
      }
  };
  for (size_t r = 0; r < rows.size(); ++r) {
    const SampleRow& s = rows[r];
    if (s.ground_truth.size(1) != h || s.ground_truth.size(2) != w || s.mask.height != h || s.mask.width != w)
      throw Error("sample_grid: row " + std::to_string(r) + " is not " + std::to_string(w) + "×" +
                  std::to_string(h) + " like the first");
    ImageU8 input = tensor_to_image(s.ground_truth), mask = blank(w, h, {0, 0, 0});
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        if (s.mask.is_hole(y, x)) {
          put_pixel(input, x, y, {255, 255, 255});
          put_pixel(mask, x, y, {255, 255, 255});
        }
    paste(input, int(r), 0);
    paste(mask, int(r), 1);
    paste(tensor_to_image(s.output), int(r), 2);
    paste(tensor_to_image(s.composite), int(r), 3);
    paste(tensor_to_image(s.ground_truth), int(r), 4);
  }
  return img;
}

}  // namespace pconv
