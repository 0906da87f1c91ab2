#pragma once
// The network's side of a batch (apps/training/trainer.h).
#include "core/data/imagenet.h"
#include "core/ops.h"
#include "core/tensor.h"

namespace pconv::training {

// The network's input for photos in [0,1] and masks (1 known): ImageNet space, holes 0.
struct NetBatch {
  Tensor gt, input, mask;
};
inline NetBatch to_network(const Tensor& images01, const Tensor& masks, Device device) {
  NetBatch b;
  b.mask = masks.to(device);
  b.gt = imagenet_normalize(images01.to(device));
  b.input = b.gt * b.mask;
  return b;
}

}  // namespace pconv::training
