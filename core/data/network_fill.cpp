#include "core/data/network_fill.h"

#include <vector>

#include "core/cpu/harmonic_fill.h"
#include "core/data/imagenet.h"

namespace pconv {

void network_fill(const Tensor& image01, const MaskImage& mask, float* out) {
  const int64_t H = mask.height, W = mask.width, plane = H * W;
  if (image01.dtype() != DType::F32 || image01.device() != Device::CPU || image01.shape() != Shape{3, H, W})
    throw Error("network_fill: image " + shape_str(image01.shape()) + " is not a 3×" + std::to_string(H) + "×" +
                std::to_string(W) + " f32 CPU tensor matching its mask");
  const float* x = image01.data<float>();
  // As the backend's kernel reads the mask: known where ≥ 0.5.
  std::vector<uint8_t> known(static_cast<size_t>(plane));
  for (int64_t i = 0; i < plane; ++i) known[size_t(i)] = mask.known[size_t(i)] >= 0.5f;
  for (int64_t c = 0; c < 3; ++c) {
    // imagenet_normalize(x) · mask as the tensor ops compute it: f32 constants, (x − mean) / std,
    // then the product, each rounded to f32.
    const float mean = float(kImageNetMean[c]), sd = float(kImageNetStd[c]);
    float* o = out + c * plane;
    for (int64_t i = 0; i < plane; ++i) o[i] = (x[c * plane + i] - mean) / sd * mask.known[size_t(i)];
    harmonic_fill_plane(o, known.data(), H, W);
  }
}

}  // namespace pconv
