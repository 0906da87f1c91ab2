// The test binary's entry: doctest's runner. Without a usable CUDA device the GPU test suite
// is excluded, so doctest counts those tests as skipped (its summary's "skipped"), not passed;
// likewise the NCCL test without NCCL or a second GPU, and, on a machine with a GPU, the tests
// of what --device cuda says without one ("(needs no CUDA device)" in their names).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "core/backend.h"
#include "core/distributed/communicator.h"
#include "tests/test_util.h"

namespace {

// GPUs on this machine (nvidia-smi -L lines; 0 without a driver).
int gpu_count() {
  std::FILE* p = ::popen("nvidia-smi -L 2>/dev/null", "r");
  if (!p) return 0;
  int n = 0;
  for (int c; (c = std::fgetc(p)) != EOF;) n += c == '\n';
  ::pclose(p);
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  if (!pconv::cuda_available()) {
    context.addFilter("test-suite-exclude", pconv::testing::kGpuSuite);
    context.addFilter("test-suite-exclude", pconv::testing::kGpuRealSuite);
    std::printf("pconv tests: no CUDA device (%s): GPU tests are skipped\n",
                pconv::cuda_unavailable_reason().c_str());
  } else {
    context.addFilter("test-case-exclude", "*(needs no CUDA device)*");
    std::printf("pconv tests: the tests of --device cuda on a machine without a GPU are skipped: this one has a "
                "CUDA device\n");
    if (const int gpus = gpu_count(); !pconv::built_with_nccl() || gpus < 2) {
      context.addFilter("test-case-exclude", "*(needs MPI, NCCL and 2 GPUs)*");
      std::printf("pconv tests: NCCL test skipped: needs pconv built with CUDA, MPI and NCCL and 2 GPUs "
                  "(built with NCCL: %s, GPUs: %d)\n",
                  pconv::built_with_nccl() ? "yes" : "no", gpus);
    }
  }
  return context.run();
}
