#pragma once
// Small helpers shared by the test files.
#include <cstdint>
#include <string>

#include "core/backend.h"
#include "core/image.h"

namespace pconv::testing {

// Counts GPU tests that could not run; main prints the total.
int& gpu_tests_skipped_counter();
inline int gpu_tests_skipped() { return gpu_tests_skipped_counter(); }

// At the top of a GPU test: `if (skip_without_gpu()) return;`
bool skip_without_gpu();

// Paths into the source tree (bundled data) and a fresh scratch folder per test.
std::string source_path(const std::string& relative);
std::string scratch_dir(const std::string& name);

// A whole file's bytes, and a file written with exactly these bytes (tests that corrupt,
// truncate or compare files).
std::string read_bytes(const std::string& path);
void write_bytes(const std::string& path, const std::string& bytes);

// A w×h RGB image of pseudo-random bytes, the same for the same seed.
ImageU8 random_image(int w, int h, uint64_t seed);

// ---- running the built apps (PCONV_BINARY_DIR)
std::string quote(const std::string& s);  // '...' for the shell

struct AppRun {
  int status = -1;
  std::string out, err;
};

// Runs a built app with `args` (already quoted), capturing both streams (files in `dir`).
AppRun run_app(const std::string& app, const std::string& args, const std::string& dir);

// The app failed with exit status 2 and one error line, the last on stderr, holding `needle`
// (progress lines may come before it). Uses doctest's CHECK.
void check_one_line_error(const AppRun& r, const std::string& needle);

}  // namespace pconv::testing
