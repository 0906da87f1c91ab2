#pragma once
// Texture transfer: fine detail for a filled hole, taken from the photo's own known pixels
// (image analogies, Hertzmann et al. 2001, with the network's fill as the guide).
//
// A network trained with pixel losses fills holes with the right colours and shapes but
// without their fine detail (MODEL_CARD.md: its holes keep a quarter of the truth's gradient
// energy). This stage keeps the fill's low frequencies and replaces its high frequencies: the
// fill is split into low = Gaussian(σ) ⊛ fill and high = fill − low; every patch of P×P pixels
// (every `stride` pixels) that touches the hole looks up the known patch whose low-pass,
// sampled at half resolution, is nearest (ℓ2, exhaustively), and the high-pass of that known
// patch is overlap-added (raised-cosine window) into the hole: out = low + amount · copied high. Known
// pixels are never changed. No learning, no randomness: the same input gives the same bytes.
//
// Cost: (target patches) × (source patches) × 3P²/4 multiply-adds as one GEMM per block of
// targets; the source patches are thinned (a coarser grid) to keep that product under
// `max_pairs`, so a large photo costs about the same as a 512² one (~1.1 s on one core).
#include <cstdint>
#include <string>
#include <vector>

#include "core/data/masks.h"
#include "core/io/image.h"

namespace pconv {

struct TextureTransferOptions {
  double sigma = 3.0;           // the low/high split, in pixels
  int64_t patch = 8;            // side of the copied patches (even)
  int64_t stride = 4;           // step between target patches (patch/2: each pixel in 4 patches)
  int64_t source_stride = 2;    // finest step between candidate source patches
  double max_pairs = 3e8;       // target × source patch pairs compared at most
  // Scale of the copied high-pass. Copied detail is the right kind but not in the right place,
  // so every unit of it costs SSIM: on the quality bar's photos 0.7 left 512² detail at 0.59 and
  // 0.75 cost 0.011 of SSIM at 256², 30–40 % holes (MODEL_CARD.md, "Texture transfer").
  double amount = 0.72;
  // How much worse (in ℓ2 distance, as a fraction) a continuation of a neighbour's source may be
  // than the nearest patch and still be taken; 0: always the nearest (a visible grid where the
  // low-pass is smooth).
  double coherence = 2.0;
};

// `composite`: the filled image (the network's output in the holes, the photo elsewhere);
// mask.known: 1 known, 0 hole, same size. Returns the composite with its hole pixels' detail
// replaced as above; the alpha channel and every known byte are the composite's. With no hole,
// or no known patch far enough from the holes to be a source (tiny photos, a hole
// everywhere), the composite comes back unchanged. Throws Error on a size mismatch or bad options.
ImageU8 texture_transfer(const ImageU8& composite, const MaskImage& mask, const TextureTransferOptions& options = {});

// The texture choices every tool offers (--texture, the API's "texture" field): "none" (the
// composite as it is) or "transfer" (texture_transfer with the default options).
bool is_texture_name(const std::string& name);
// Throws Error "texture 'x': expected none or transfer" for any other name.
void check_texture_name(const std::string& name);
// The composite with `name`'s texture applied (check_texture_name's Error for a bad name); by
// value, so "none" moves the caller's image through without a copy.
ImageU8 apply_texture(const std::string& name, ImageU8 composite, const MaskImage& mask);

namespace texture_detail {
// The pieces, public for tests. Planes are 3×H×W floats.
// Gaussian blur of each plane, kernel radius ⌈3σ⌉, borders mirrored (…cb|abc…).
std::vector<float> gaussian_blur(const std::vector<float>& planes, int64_t h, int64_t w, double sigma);
// For each row of `targets` (n×d, row-major), the index of the nearest row of `sources` (m×d)
// in ℓ2; ties to the lower index.
std::vector<int64_t> nearest_rows(const std::vector<float>& targets, const std::vector<float>& sources, int64_t d);
}  // namespace texture_detail

}  // namespace pconv
