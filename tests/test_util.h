#pragma once
// Small helpers shared by the test files.
// INFO and CAPTURE capture by reference in a lambda, which clang 14 cannot do for a structured
// binding: give them a plain variable or entry.first (the suite must build with clang 14).
#include <cstdint>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <map>

#include "core/backend.h"
#include "core/io/image.h"

namespace pconv::testing {

// Every tensor of two state dicts equal bit for bit (NaN-free, so == on values is bitwise).
void check_same_tensors(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b);
// Two tensors of one shape with equal values everywhere (NaN-free); the message counts those that differ.
void check_identical(const Tensor& a, const Tensor& b, const std::string& what);

// The message of the Error `f` throws; fails the test when it throws nothing.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("no error thrown");
  return "";
}

// GPU tests belong to the doctest test suite "gpu": TEST_CASE("..." * doctest::test_suite("gpu")).
// Without a usable device main excludes that suite, so doctest reports them as skipped.
inline constexpr const char* kGpuSuite = "gpu";
// The same comparisons at the shapes users run (tests/test_gpu_real_shapes.cpp; minutes of CPU time).
inline constexpr const char* kGpuRealSuite = "gpu-real";

// An N×1×side×side mask (1 known) with one square hole of side/2 in the middle of every image.
Tensor square_hole(int64_t N, int64_t side, DType dtype = DType::F32);

// Paths into the source tree (bundled data) and a fresh scratch folder per test.
std::string source_dir();  // PCONV_SOURCE_DIR, or $PCONV_TEST_SOURCE_DIR when set
std::string binary_dir();  // PCONV_BINARY_DIR, or $PCONV_TEST_BINARY_DIR when set
std::string source_path(const std::string& relative);
std::string scratch_dir(const std::string& name);

// A whole file's bytes, and a file written with exactly these bytes (tests that corrupt,
// truncate or compare files).
std::string read_bytes(const std::string& path);
void write_bytes(const std::string& path, const std::string& bytes);

// A built app run with `args` (already shell-quoted, see quote), both streams captured.
struct AppRun {
  int status = -1;
  std::string out, err;
};
std::string quote(const std::string& s);  // 'like this', for the shell
AppRun run_app(const std::string& app, const std::string& args, const std::string& dir);
// The app failed with exit status 2 and one error line, the last on stderr, holding `needle`
// (progress lines may come before it).
void check_one_line_error(const AppRun& r, const std::string& needle);

// A w×h RGB image of pseudo-random bytes, the same for the same seed.
ImageU8 random_image(int w, int h, uint64_t seed);

// ---- programs run by the tests
struct Spawned {
  int pid = -1;
  std::string out, err;  // files holding its stdout and stderr
};
// Starts `program` (an app name, found in PCONV_BINARY_DIR, or a path) with `args`, its
// stdout and stderr going to dir/<name>.stdout and .stderr. `file_size_limit` > 0 sets
// RLIMIT_FSIZE in the child with SIGXFSZ ignored, so writes past it fail with EFBIG (a full
// disk, per file); processes it starts inherit that.
Spawned spawn(const std::string& program, const std::vector<std::string>& args, const std::string& dir,
              uint64_t file_size_limit = 0);
// Its exit status (128 + the signal when killed). With timeout_s > 0: −1 when it has not
// ended by then, after killing it and its children (so a hung test leaves nothing behind).
int wait_exit(const Spawned& s, double timeout_s = 0);
struct Result {
  int status = 0;
  std::string out, err;
};
Result run(const std::string& program, const std::vector<std::string>& args, const std::string& dir,
           uint64_t file_size_limit = 0, double timeout_s = 0);
// The processes whose parent is `parent` (from /proc).
std::vector<int> child_pids(int parent);

}  // namespace pconv::testing
