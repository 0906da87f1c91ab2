#pragma once
// inpaint-run's work: fills the holes of image files with a trained PConvUNet. One image
// (image, mask and out are files) or folders (all three are folders; images and masks paired
// by file stem, written as <out>/<stem>.png). The output is the composite: known pixels are
// the input's bytes, holes come from the network; `raw` also writes the network's output
// everywhere (<out stem>_raw). Any image size, through the HD strategies (hd_strategy.h); grey
// inputs become RGB, RGBA inputs keep their alpha in PNG outputs. Progress goes to stderr
// (cli::progress); a bad input or output stops the run with cli::fail before anything is
// computed where it can be checked up front.
#include <cstdint>
#include <string>

#include "apps/inference/hd_strategy.h"
#include "core/io/image.h"

namespace pconv::inference {

struct InpaintFilesOptions {
  std::string model;                 // checkpoint; empty: the bundled model
  std::string image, mask, out;      // files, or folders
  std::string holes = "white";       // colour of holes in the mask files
  std::string device_name = "cpu";   // "cpu" or "cuda"
  std::string precision = "fp32";    // or "bf16" (CPU only)
  bool raw = false;                  // also write the network's un-composited output
  bool force = false;                // overwrite existing outputs
  bool fill_only = false;            // harmonic fill alone, no network
  std::string texture = "none";      // "transfer": detail from the photo's known pixels (models/texture_transfer.h)
  int batch = 0;                     // images of one size per pass; 0: 1 on cpu, 8 on cuda
  int64_t max_pixels = kMaxImagePixels;
  std::string hd_strategy = "crop";  // crop | resize | original
  HdOptions hd;                      // its sizes (hd.strategy is set from hd_strategy)
  double memory_limit_gib = 0;       // a forward pass's CPU memory; 0: what the system has available
};

// Runs inpaint-run: checks every input and output, then inpaints and writes each image.
void inpaint_files(InpaintFilesOptions options);

}  // namespace pconv::inference
