#pragma once
// An exponential moving average of a module's weights (Polyak averaging), the generator that
// GAN and diffusion training ship: the live weights of an adversarial run wander from step to
// step around what the losses agree on, and their average sits near the middle. On the texture
// trials, averaging the last four checkpoints (375 steps) of a run raised the held-out PSNR by
// 0.3–0.5 dB and its hole detail at 256² from 0.62–0.64 to 0.69–0.71 (docs/training.md, --ema).
#include <cstdint>
#include <map>
#include <string>

#include "core/tensor.h"
#include "layers/module.h"

namespace pconv {

class WeightAverage {
 public:
  // Starts at the module's current state (parameters and buffers: BatchNorm's running
  // statistics are averaged too, so the average is a model that can run on its own).
  // decay in [0, 1).
  WeightAverage(Module& module, double decay);

  // After each optimiser step: avg ← d·avg + (1 − d)·live, d = min(decay, (1 + n)/(10 + n)) for
  // the n-th update, so the first updates forget the starting point fast (TensorFlow's
  // ExponentialMovingAverage with num_updates).
  void update();
  double decay() const { return decay_; }
  double current_decay() const;  // d of the next update
  int64_t updates() const { return updates_; }
  const std::map<std::string, Tensor>& state() const { return average_; }

  // A resume: the average and its update count from a checkpoint (names and shapes as the
  // module's state; an Error naming the first that differs).
  void load(const std::map<std::string, Tensor>& average, int64_t updates);

 private:
  Module& module_;
  double decay_;
  int64_t updates_ = 0;
  std::map<std::string, Tensor> average_;
};

// For its lifetime the module holds the average (validation, samples, a checkpoint's model),
// then its own weights again, bit for bit.
class AveragedWeights {
 public:
  AveragedWeights(Module& module, const WeightAverage& average);
  ~AveragedWeights();
  AveragedWeights(const AveragedWeights&) = delete;
  AveragedWeights& operator=(const AveragedWeights&) = delete;
  // The module's own (live) state, as it was before the swap.
  const std::map<std::string, Tensor>& live() const { return live_; }

 private:
  Module& module_;
  std::map<std::string, Tensor> live_;
};

}  // namespace pconv
