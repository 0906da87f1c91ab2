#pragma once
// Pictures of a training run drawn by our own code into 8-bit RGB images (no plotting library):
// loss curves with axes and a legend, and sample grids.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/data/masks.h"
#include "core/io/image.h"
#include "core/tensor.h"

namespace pconv {

using Rgb = std::array<uint8_t, 3>;

struct Curve {
  std::string name;
  std::vector<double> x, y;  // same length; non-finite or (log scale) non-positive y are skipped
  Rgb color{0, 0, 0};
};

struct PlotOptions {
  int width = 900, height = 540;
  bool log_y = true;
  // When > 0, each curve is drawn faded and, on top, averaged over ±smooth pixel columns: the
  // trend of a noisy per-step loss.
  int smooth = 0;
  std::string title, x_label = "step";
};

// Axes with tick labels, one polyline per curve (long curves are averaged into one point per
// pixel column, so a million steps still draw as a readable line), and a legend.
ImageU8 plot_curves(const std::vector<Curve>& curves, const PlotOptions& options = {});

// A distinct colour for curve i (a fixed palette).
Rgb curve_color(size_t i);

// One row of a sample grid; images are 3×H×W in [0,1], all rows the same size.
struct SampleRow {
  Tensor ground_truth, output, composite;
  MaskImage mask;  // 1 known, 0 hole
};

// Columns: input with holes (white) | mask (holes white) | output | composite | ground truth,
// separated by a 4-pixel grey gap.
ImageU8 sample_grid(const std::vector<SampleRow>& rows);

// ---- drawing primitives (public for tests)
void fill_rect(ImageU8& img, int x0, int y0, int x1, int y1, Rgb color);  // [x0,x1)×[y0,y1)
void draw_line(ImageU8& img, int x0, int y0, int x1, int y1, Rgb color);
// A 3×5-pixel font scaled by `scale` (digits, a–z (upper case drawn as lower), . , - + _ : / % ( ) = *).
void draw_text(ImageU8& img, int x, int y, const std::string& text, Rgb color, int scale = 2);
int text_width(const std::string& text, int scale = 2);

}  // namespace pconv
