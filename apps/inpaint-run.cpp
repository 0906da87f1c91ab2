// inpaint-run: fills the holes of images with a trained PConvUNet (apps/inference/inpaint_files.h
// says what it does with files, folders, sizes and channels): its options, then one call.
#include <CLI/CLI.hpp>

#include "apps/cli/cli.h"
#include "apps/inference/inpaint_files.h"

using namespace pconv;

int main(int argc, char** argv) {
  CLI::App app{"Fill the holes of images with a trained PConvUNet; writes the composite (known pixels unchanged).",
               "inpaint-run"};
  inference::InpaintFilesOptions o;
  app.add_option("--model", o.model, "checkpoint (.safetensors) written by inpaint-train [default: the bundled model]");
  app.add_option("--image", o.image, "image file, or a folder of images")->required();
  app.add_option("--mask", o.mask, "mask file (same size as the image), or a folder of masks with the images' names")
      ->required();
  app.add_option("--out", o.out, "output file (.png, .jpg), or a folder (written as <name>.png)")->required();
  app.add_option("--mask-holes", o.holes, "colour of holes in the mask files")
      ->check(cli::mask_holes_validator())
      ->capture_default_str();
  app.add_flag("--raw", o.raw, "also write the network's un-composited output (<out stem>_raw)");
  app.add_flag("--force", o.force, "overwrite existing outputs");
  app.add_flag("--fill-only", o.fill_only,
               "no network: fill the holes with the harmonic fill alone (the smooth classical baseline "
               "that the bundled model adds texture to)")
      ->excludes("--model")
      ->excludes("--raw");
  app.add_option("--texture", o.texture,
                 "transfer: give the fill the fine detail of the photo's own known pixels (each hole patch takes the "
                 "high frequencies of the known patch that looks most like it; models/texture_transfer.h); none: the "
                 "network's fill as it is")
      ->check(CLI::IsMember({"none", "transfer"}))
      ->capture_default_str();
  app.add_option("--device", o.device_name, "cpu or cuda")->check(cli::device_validator())->capture_default_str();
  app.add_option("--batch", o.batch, "images of one size per forward pass (default: 1 on cpu, 8 on cuda)")
      ->check(cli::positive);
  app.add_option("--max-pixels", o.max_pixels, "refuse larger images")->check(cli::positive)->capture_default_str();
  app.add_option("--precision", o.precision,
                 "fp32, or bf16: the CPU's convolutions multiply bf16 operands, summing in f32 (needs AVX512-BF16)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  app.add_option("--hd-strategy", o.hd_strategy,
                 "large photos: crop (each hole's box plus a margin at full size), resize (scale down, "
                 "paste the holes back) or original (the whole photo at once)")
      ->check(CLI::IsMember(inference::kHdStrategyNames, CLI::ignore_case))
      ->capture_default_str();
  app.add_option("--hd-crop-trigger", o.hd.crop_trigger_size, "crop only photos whose long side is larger")
      ->check(cli::positive)
      ->capture_default_str();
  app.add_option("--hd-crop-margin", o.hd.crop_margin, "pixels of context around each hole's box")
      ->check(cli::non_negative)
      ->capture_default_str();
  app.add_option("--hd-resize-limit", o.hd.resize_limit, "resize: scale the long side down to this")
      ->check(cli::positive)
      ->capture_default_str();
  app.add_option("--memory-limit", o.memory_limit_gib,
                 "GiB a forward pass may use on the cpu [0: the memory the system has available]")
      ->check(cli::non_negative);

  return cli::run(app, argc, argv, [&] { inference::inpaint_files(o); });
}
