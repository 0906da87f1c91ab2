// The test binary's entry: doctest's runner. Without a usable CUDA device the GPU test suite
// is excluded, so doctest counts those tests as skipped (its summary's "skipped"), not passed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "core/backend.h"
#include "tests/test_util.h"

int main(int argc, char** argv) {
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  if (!pconv::cuda_available()) {
    context.addFilter("test-suite-exclude", pconv::testing::kGpuSuite);
    std::printf("pconv tests: no CUDA device (%s): GPU tests are skipped\n",
                pconv::cuda_unavailable_reason().c_str());
  }
  return context.run();
}
