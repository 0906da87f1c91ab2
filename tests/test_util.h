#pragma once
// Small helpers shared by the test files.
#include <cstdint>
#include <string>

#include "core/backend.h"
#include "core/image.h"

namespace pconv::testing {

// GPU tests belong to the doctest test suite "gpu": TEST_CASE("..." * doctest::test_suite("gpu")).
// Without a usable device main excludes that suite, so doctest reports them as skipped.
inline constexpr const char* kGpuSuite = "gpu";

// Paths into the source tree (bundled data) and a fresh scratch folder per test.
std::string source_path(const std::string& relative);
std::string scratch_dir(const std::string& name);

// A whole file's bytes, and a file written with exactly these bytes (tests that corrupt,
// truncate or compare files).
std::string read_bytes(const std::string& path);
void write_bytes(const std::string& path, const std::string& bytes);

// A w×h RGB image of pseudo-random bytes, the same for the same seed.
ImageU8 random_image(int w, int h, uint64_t seed);

}  // namespace pconv::testing
