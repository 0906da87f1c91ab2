#pragma once
// Small helpers shared by the test files.
#include <string>

#include "core/backend.h"

namespace pconv::testing {

// Counts GPU tests that could not run; main prints the total.
int& gpu_tests_skipped_counter();
inline int gpu_tests_skipped() { return gpu_tests_skipped_counter(); }

// At the top of a GPU test: `if (skip_without_gpu()) return;`
bool skip_without_gpu();

// Paths into the source tree (bundled data) and a fresh scratch folder per test.
std::string source_path(const std::string& relative);
std::string scratch_dir(const std::string& name);

}  // namespace pconv::testing
