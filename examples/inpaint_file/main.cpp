// inpaint_file IMAGE MASK OUT [MODEL]: fills the holes (white in MASK) of IMAGE with pconv's
// bundled model, or MODEL, and writes OUT (.png or .jpg). The whole of pconv's embedding API in
// use: an Inpainter, and pconv's image files.
#include <cstdio>
#include <exception>

#include "apps/inference/inpainter.h"
#include "core/data/masks.h"
#include "core/io/image.h"

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: %s IMAGE MASK OUT [MODEL]\n", argv[0]);
    return 1;
  }
  try {
    pconv::InpainterOptions options;
    if (argc == 5) options.model = argv[4];  // else the model installed in <prefix>/share/pconv/
    options.hd_strategy = "crop";           // large photos: each hole at full resolution
    pconv::Inpainter inpainter(options);

    const pconv::ImageU8 image = pconv::read_image_u8(argv[1]);
    const pconv::MaskImage mask = pconv::load_mask(argv[2], pconv::MaskHoles::White).mask;
    pconv::save_image(argv[3], inpainter.inpaint(image, mask));
    std::fprintf(stderr, "inpaint_file: %s with the %s from %s\n", argv[3],
                 inpainter.model_description().c_str(), inpainter.model_path().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "inpaint_file: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
