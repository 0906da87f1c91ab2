#pragma once
// The tiny training run of the trainer tests: 3 levels, width 8, 32×32 crops of the bundled
// photos, batch 2 (~30 ms a step), pixel and TV terms only.
#include <string>

#include "apps/training/trainer.h"
#include "tests/test_util.h"

namespace pconv::testing {

inline TrainOptions tiny_train_options(const std::string& out, int64_t steps) {
  TrainOptions o;
  o.data_dir = source_path("data/train");
  o.out_dir = out;
  o.vgg = "none";
  o.size = 32, o.batch = 2, o.levels = 3, o.width = 8;
  o.seed = 7;
  o.steps = steps;
  o.save_every = 2, o.keep = 10, o.val_every = 2, o.sample_every = 3, o.val_count = 2, o.log_every = 1;
  o.quiet = true;
  return o;
}

}  // namespace pconv::testing
