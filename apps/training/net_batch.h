#pragma once
// The network's side of a batch (apps/training/trainer.h).
#include "core/data/imagenet.h"
#include "core/ops.h"
#include "core/tensor.h"

namespace pconv::training {

// The network's input for photos in [0,1] and masks (1 known): ImageNet space, holes 0; and the
// loader's harmonic fill of it when it made one (core/data/dataset.h, Batch::fill), else undefined.
struct NetBatch {
  Tensor gt, input, mask, fill;
};
inline NetBatch to_network(const Tensor& images01, const Tensor& masks, Device device, const Tensor& fill = {}) {
  NetBatch b;
  b.mask = masks.to(device);
  b.gt = imagenet_normalize(images01.to(device));
  b.input = b.gt * b.mask;
  if (fill.defined()) b.fill = fill.to(device);
  return b;
}

}  // namespace pconv::training
