#pragma once
// The statistics half of batch_norm (core/ops/batchnorm.cpp), shared with the fused
// batch_norm_activation (core/ops/batchnorm_activation.cpp) so both check, normalise and update
// the running averages alike.
#include "core/ops.h"

namespace pconv {

struct BatchNormStatistics {
  Tensor mean, var;      // what normalises: the batch's, or copies of the running ones
  Tensor gamma, beta;    // detached; ones and zeros where undefined
  double count = 0;      // values per channel in the statistics (all ranks' when synchronised)
  Communicator* ranks = nullptr;  // set when the statistics are those of several ranks
};

// Checks the arguments (errors name "batch_norm"), takes the batch statistics or the running
// ones, and updates the running ones when asked, as batch_norm documents in core/ops.h.
BatchNormStatistics batch_norm_statistics(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                          Tensor& running_mean, Tensor& running_var, bool use_batch_stats,
                                          bool update_running_stats, double momentum, Communicator* sync);

}  // namespace pconv
