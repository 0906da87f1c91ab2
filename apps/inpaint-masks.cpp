// inpaint-masks: writes a reproducible set of irregular hole masks (PNG, white = hole unless
// --mask-holes black) and prints its hole-ratio histogram. Mask i of a seed is the same
// whatever --count is, so sets can be extended.
#include <CLI/CLI.hpp>
#include <charconv>
#include <string_view>
#include <cstdio>
#include <string>
#include <vector>

#include "apps/cli/cli.h"
#include "core/data/masks.h"
#include "core/metrics/metrics.h"

using namespace pconv;

int main(int argc, char** argv) {
  CLI::App app{"Generate a reproducible set of irregular hole masks (strokes, ellipses, blobs).", "inpaint-masks"};
  int64_t count = 0;
  std::string size = "256", out_dir, holes = "white";
  uint64_t seed = 0;
  double min_ratio = 0.01, max_ratio = 0.60;
  bool force = false;
  app.add_option("--count", count, "number of masks")->required()->check(cli::positive);
  app.add_option("--size", size, "S (square) or WxH, e.g. 384x256")->capture_default_str();
  app.add_option("--seed", seed, "seed of the set")->capture_default_str();
  app.add_option("--out", out_dir, "output folder (created when missing)")->required();
  app.add_option("--min-ratio", min_ratio, "smallest target hole ratio")->capture_default_str();
  app.add_option("--max-ratio", max_ratio, "largest target hole ratio")->capture_default_str();
  app.add_option("--mask-holes", holes, "colour of holes in the files")->check(cli::mask_holes_validator())->capture_default_str();
  app.add_flag("--force", force, "overwrite existing files");

  return cli::run(app, argc, argv, [&] {
    // from_chars, not sscanf: sscanf's %lld is undefined on numbers past long long.
    int64_t width = 0, height = 0;
    auto side = [](std::string_view text, int64_t& v) {
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      return !text.empty() && ec == std::errc() && end == text.data() + text.size();
    };
    const size_t x = size.find('x');
    if (x == std::string::npos ? !side(size, width) || !side(size, height)
                               : !side(std::string_view(size).substr(0, x), width) ||
                                     !side(std::string_view(size).substr(x + 1), height))
      width = height = 0;
    if (width <= 0 || height <= 0 || width > 16384 || height > 16384)
      cli::fail("--size '" + size + "' is not S or WxH with sides in 1..16384");
    MaskGeneratorOptions opt{min_ratio, max_ratio};
    const MaskHoles convention = parse_mask_holes(holes);

    cli::ensure_folder(out_dir);
    std::vector<std::string> paths;
    const int digits = std::max<int>(4, int(std::to_string(count - 1).size()));
    for (int64_t i = 0; i < count; ++i) {
      std::string index = std::to_string(i);
      index.insert(0, size_t(std::max<int>(0, digits - int(index.size()))), '0');
      paths.push_back(out_dir + "/mask_" + index + ".png");
      cli::check_can_write(paths.back(), force);  // all checked before anything is written
    }
    std::vector<double> ratios;
    for (int64_t i = 0; i < count; ++i) {
      const MaskImage m = generate_mask(height, width, seed, uint64_t(i), opt);
      save_mask(paths[size_t(i)], m, convention);
      ratios.push_back(hole_ratio(m));
      if ((i + 1) % 100 == 0 && i + 1 < count)
        cli::progress("inpaint-masks: " + std::to_string(i + 1) + "/" + std::to_string(count));
    }
    std::printf("%lld masks of %lldx%lld (holes %s, seed %llu) in %s\nhole ratio  count\n%s", (long long)count,
                (long long)width, (long long)height, holes.c_str(), (unsigned long long)seed, out_dir.c_str(),
                hole_ratio_histogram(ratios).c_str());
  });
}
