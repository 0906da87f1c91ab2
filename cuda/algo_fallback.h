#pragma once
// Running the first of a ranked list of candidates that works, and forgetting those that fail:
// cuDNN can rank an algorithm for a shape and then refuse it at run time (NOT_SUPPORTED,
// EXECUTION_FAILED, a workspace that cannot be had), so each convolution tries its cached
// candidates in order and drops, for good, the ones that failed. Plain C++ (no CUDA types), so
// the logic is tested on machines without a GPU (tests/test_algo_fallback.cpp).
#include <mutex>
#include <string>
#include <vector>

#include "core/dtype.h"  // Error

namespace pconv {

struct Attempt {
  bool ok = false;
  bool recoverable = false;  // the next candidate may work (not a dead context, not a bad call)
  std::string why;           // what failed, for the message
};

// Runs run(candidate) for candidates[0], [1], ... until one returns ok; every candidate before
// it that failed recoverably is erased from `candidates` (under `lock`, which guards the list:
// it is shared by every call of one shape). An unrecoverable failure throws at once; when no
// candidate is left, the Error names the last failure. Returns the candidate that ran.
template <typename C, typename Run>
C run_first_that_works(std::vector<C>& candidates, std::mutex& lock, const std::string& op, Run&& run) {
  std::string last = "no candidate";
  for (;;) {
    C c;
    {
      std::lock_guard<std::mutex> guard(lock);
      if (candidates.empty()) throw Error(op + ": no algorithm ran for these shapes (last: " + last + ")");
      c = candidates.front();
    }
    const Attempt a = run(c);
    if (a.ok) return c;
    if (!a.recoverable) throw Error(op + ": " + a.why);
    last = a.why;
    std::lock_guard<std::mutex> guard(lock);
    if (!candidates.empty() && candidates.front() == c) candidates.erase(candidates.begin());
  }
}

}  // namespace pconv
