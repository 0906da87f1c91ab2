// inpaint-eval: compares inpainted results with their ground truths as the paper does — ℓ1
// (%), PSNR and SSIM on the whole image after compositing the result with the ground truth
// through the mask — grouped by hole ratio, and prints the markdown table (CSV optional).
// Files are paired by name stem across the three folders.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "apps/common/cli.h"
#include "core/safetensors.h"  // write_file_atomic
#include "core/metrics.h"

using namespace pconv;

int main(int argc, char** argv) {
  CLI::App app{"Evaluate inpainting results against ground truth by hole-ratio bucket (PSNR, SSIM, l1 %).",
               "inpaint-eval"};
  std::string results, gt, masks, holes = "white", csv, per_image_csv;
  bool force = false;
  app.add_option("--results", results, "folder of inpainted images")->required();
  app.add_option("--gt", gt, "folder of ground-truth images (same names)")->required();
  app.add_option("--masks", masks, "folder of masks (same names)")->required();
  app.add_option("--mask-holes", holes, "colour of holes in the mask files")
      ->check(cli::mask_holes_validator())
      ->capture_default_str();
  app.add_option("--csv", csv, "write the bucket table as CSV here");
  app.add_option("--per-image-csv", per_image_csv, "write one CSV row per image here");
  app.add_flag("--force", force, "overwrite existing CSV files");

  return cli::run(app, argc, argv, [&] {
    const MaskHoles convention = parse_mask_holes(holes);
    if (!csv.empty()) cli::check_can_write(csv, force);
    if (!per_image_csv.empty()) cli::check_can_write(per_image_csv, force);
    const auto files = match_eval_files(results, gt, masks);
    cli::progress("inpaint-eval: " + std::to_string(files.size()) + " images, mask holes are " + holes);
    MetricsTable table;
    int64_t grey = 0;
    for (const EvalFiles& f : files) {
      bool had_grey = false;
      table.add(evaluate_files(f, convention, &had_grey));
      grey += had_grey;
    }
    if (grey > 0)
      cli::progress("inpaint-eval: " + std::to_string(grey) + " mask(s) had grey levels, thresholded at 50 %");
    if (table.outside_buckets() > 0)
      cli::progress("inpaint-eval: " + std::to_string(table.outside_buckets()) +
                    " image(s) have a hole ratio outside (0.01, 0.6]: only in the 'all' row");
    std::fputs(table.markdown().c_str(), stdout);
    if (!csv.empty()) write_file_atomic(csv, table.csv());
    if (!per_image_csv.empty()) write_file_atomic(per_image_csv, table.per_image_csv());
  });
}
