// cuda/algo_fallback.h: the run-time fallback over cuDNN's ranked algorithms, without a GPU.
#include <doctest/doctest.h>

#include <mutex>
#include <vector>

#include "cuda/algo_fallback.h"

using namespace pconv;

TEST_CASE("algo fallback: a candidate that fails recoverably is dropped for good and the next one runs") {
  std::vector<int> candidates{7, 3, 5};
  std::mutex lock;
  std::vector<int> tried;
  auto run = [&](int c) {
    tried.push_back(c);
    return Attempt{c == 3, true, "algo " + std::to_string(c) + " NOT_SUPPORTED"};
  };
  CHECK(run_first_that_works(candidates, lock, "conv", run) == 3);
  CHECK(tried == std::vector<int>{7, 3});
  CHECK(candidates == std::vector<int>{3, 5});
  // Remembered: the next call goes straight to 3.
  tried.clear();
  CHECK(run_first_that_works(candidates, lock, "conv", run) == 3);
  CHECK(tried == std::vector<int>{3});
}

TEST_CASE("algo fallback: all failing is a one-line error naming the last failure; a hard failure stops at once") {
  std::vector<int> candidates{1, 2};
  std::mutex lock;
  auto fails = [](int c) { return Attempt{false, true, "algo " + std::to_string(c) + " EXECUTION_FAILED"}; };
  CHECK_THROWS_WITH_AS(run_first_that_works(candidates, lock, "conv2d_forward [1, 3, 8, 8]", fails),
                       "conv2d_forward [1, 3, 8, 8]: no algorithm ran for these shapes (last: algo 2 EXECUTION_FAILED)",
                       Error);
  CHECK(candidates.empty());
  std::vector<int> more{4, 6};
  int calls = 0;
  auto hard = [&](int) {
    ++calls;
    return Attempt{false, false, "CUDNN_STATUS_BAD_PARAM"};
  };
  CHECK_THROWS_WITH_AS(run_first_that_works(more, lock, "conv", hard), "conv: CUDNN_STATUS_BAD_PARAM", Error);
  CHECK(calls == 1);
  CHECK(more == std::vector<int>{4, 6});
}
