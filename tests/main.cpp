// The test binary's entry: doctest's runner, plus one line saying whether GPU tests run.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "core/backend.h"
#include "tests/test_util.h"

int main(int argc, char** argv) {
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  if (!pconv::cuda_available())
    std::printf("pconv tests: no CUDA device (%s): GPU tests are skipped\n",
                pconv::cuda_unavailable_reason().c_str());
  int rc = context.run();
  if (pconv::testing::gpu_tests_skipped() > 0)
    std::printf("no CUDA device: %d GPU tests skipped\n", pconv::testing::gpu_tests_skipped());
  return rc;
}
