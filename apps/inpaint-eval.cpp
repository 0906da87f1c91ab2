// inpaint-eval: compares inpainted results with their ground truths as the paper does — ℓ1
// (%), PSNR and SSIM on the whole image after compositing the result with the ground truth
// through the mask — and by hole detail (core/metrics/metrics.h: the fill's share of the truth's
// gradient inside the hole, median per row), grouped by hole ratio, and prints the markdown
// table (CSV optional).
// Files are paired by name stem across the three folders. With --images DIR --masks DIR it runs
// the model (--model CKPT, or the bundled one) (apps/inference/inference.h) on the images, which are the
// ground truth, and evaluates its composites directly.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "apps/cli/cli.h"
#include "apps/inference/bundled_model.h"
#include "apps/inference/inference.h"
#include "core/io/safetensors.h"  // write_file_atomic
#include "core/metrics/metrics.h"
#include "models/texture_transfer.h"

using namespace pconv;

int main(int argc, char** argv) {
  CLI::App app{"Evaluate inpainting results against ground truth by hole-ratio bucket (PSNR, SSIM, l1 %, hole detail).",
               "inpaint-eval"};
  std::string results, gt, masks, holes = "white", csv, per_image_csv, model, images, device_name = "cpu";
  bool force = false;
  auto* results_opt = app.add_option("--results", results, "folder of inpainted images");
  auto* gt_opt = app.add_option("--gt", gt, "folder of ground-truth images (same names)");
  app.add_option("--masks", masks, "folder of masks (same names)")->required();
  auto* model_opt = app.add_option("--model", model,
                                   "with --images: this checkpoint instead of the bundled model");
  auto* images_opt = app.add_option("--images", images,
                                    "folder of ground-truth images to inpaint with the model (instead of --results)");
  model_opt->needs(images_opt);
  std::string texture = "none";
  app.add_option("--texture", texture, "with --images: none, or transfer (inpaint-run --texture)")
      ->check(CLI::IsMember({"none", "transfer"}))
      ->capture_default_str()
      ->needs(images_opt);
  images_opt->excludes(results_opt)->excludes(gt_opt);
  results_opt->needs(gt_opt);
  gt_opt->needs(results_opt);
  app.add_option("--device", device_name, "with --model: cpu or cuda")
      ->check(cli::device_validator())
      ->capture_default_str();
  app.add_option("--mask-holes", holes, "colour of holes in the mask files")
      ->check(cli::mask_holes_validator())
      ->capture_default_str();
  app.add_option("--csv", csv, "write the bucket table as CSV here");
  app.add_option("--per-image-csv", per_image_csv, "write one CSV row per image here");
  app.add_flag("--force", force, "overwrite existing CSV files");

  return cli::run(app, argc, argv, [&] {
    const MaskHoles convention = parse_mask_holes(holes);
    if (!csv.empty() && !per_image_csv.empty()) cli::check_not_input(per_image_csv, csv, "the --csv file");
    if (images.empty() && results.empty())
      cli::fail("give --results and --gt, or --images (with the bundled model or --model)");
    const Device device = cli::parse_device(device_name);
    // With --model the images are their own ground truth; only the mask pairing matters.
    const auto files = images.empty() ? match_eval_files(results, gt, masks) : match_eval_files(images, images, masks);
    if (!images.empty()) model = bundled::resolve_model(model, "inpaint-eval");
    // Neither CSV may be a file this run reads (the model, a result, a truth, a mask), however
    // it is spelled, --force or not: checked before anything is read or written.
    for (const std::string* out : {&csv, &per_image_csv}) {
      if (out->empty()) continue;
      if (!images.empty()) cli::check_not_input(*out, model, "the --model file");
      for (const EvalFiles& f : files) {
        if (images.empty()) {
          cli::check_not_input(*out, f.result, "a result image");
          cli::check_not_input(*out, f.gt, "a ground-truth image");
        } else {
          cli::check_not_input(*out, f.gt, "an --images image");
        }
        cli::check_not_input(*out, f.mask, "a mask");
      }
      cli::check_can_write(*out, force);
    }
    std::unique_ptr<PConvUNet> net;
    if (!images.empty()) {
      net = inference::load_model(model, device);
      cli::progress("inpaint-eval: " + net->config().describe() + " from " + model);
    }
    cli::progress("inpaint-eval: " + std::to_string(files.size()) + " images, mask holes are " + holes);
    MetricsTable table;
    int64_t grey = 0, alpha = 0, done = 0;
    for (const EvalFiles& f : files) {
      bool had_grey = false, by_alpha = false;
      if (net) {
        const ImageU8 image = read_image_u8(f.gt);
        const LoadedMask lm = load_mask(f.mask, convention);
        had_grey = lm.had_grey_levels;
        by_alpha = lm.read_by_alpha;
        if (lm.mask.width != image.width || lm.mask.height != image.height)
          cli::fail(f.mask + ": the mask is " + std::to_string(lm.mask.width) + "×" + std::to_string(lm.mask.height) +
                    ", the image " + f.gt + " is " + std::to_string(image.width) + "×" + std::to_string(image.height));
        const ImageU8 comp = apply_texture(texture, inference::inpaint(*net, image, lm.mask).composite, lm.mask);
        table.add(evaluate_image(f.name, image_to_tensor(comp), image_to_tensor(image), lm.mask));
        if (++done % 10 == 0 || done == int64_t(files.size()))
          cli::progress("inpaint-eval: " + std::to_string(done) + "/" + std::to_string(files.size()));
      } else {
        table.add(evaluate_files(f, convention, &had_grey, &by_alpha));
      }
      if (by_alpha && alpha++ == 0) cli::progress("inpaint-eval: note: " + alpha_mask_note(f.mask));
      grey += had_grey;
    }
    if (grey > 0)
      cli::progress("inpaint-eval: " + std::to_string(grey) + " mask(s) had grey levels, thresholded at 50 %");
    if (table.outside_buckets() > 0)
      cli::progress("inpaint-eval: " + std::to_string(table.outside_buckets()) +
                    " image(s) have a hole ratio outside (0.01, 0.6]: only in the 'all' row");
    if (table.all().hole_detail_skipped > 0)
      cli::progress("inpaint-eval: " + std::to_string(table.all().hole_detail_skipped) +
                    " image(s) have no hole detail (no hole of 5×5 px or more, or a flat truth there): "
                    "left out of its medians");
    std::fputs(table.markdown().c_str(), stdout);
    if (!csv.empty()) write_file_atomic(csv, table.csv());
    if (!per_image_csv.empty()) write_file_atomic(per_image_csv, table.per_image_csv());
  });
}
