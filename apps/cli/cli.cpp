#include "apps/cli/cli.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include "core/backend.h"
#include "core/dtype.h"

namespace pconv::cli {

namespace {

// Every numeric option's text is checked before CLI11 converts it, because CLI11 2.1 converts
// without range checks: strtoll clamps "99999999999999999999" to 2^63 − 1, strtoull turns "-1"
// into 2^64 − 1, and doubles come through as 1e300, inf or nan, which the apps multiply and
// cast to integers (undefined behaviour). No option of pconv's tools takes a negative number,
// and none needs more than 2^31 − 1 except seeds (any 64-bit value), so every number must be in
// [0, 2^31 − 1] — whole for integer options, finite for real ones — which keeps products such as
// GiB × 2^30 far inside int64. Options' own validators still apply their tighter bounds.
constexpr double kMaxNumber = 2147483647.0;

std::string check_number_text(const std::string& text, const std::string& type, bool seed) {
  const bool real = type == "FLOAT";
  const std::string range = seed ? "a whole number >= 0" : std::string(real ? "a number" : "a whole number") +
                                                               " from 0 to 2147483647";
  const std::string bad = "must be " + range + ", got '" + text + "'";
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0])) || text[0] == '-') return bad;
  char* end = nullptr;
  errno = 0;
  if (real) {
    const double v = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size() || errno == ERANGE || !std::isfinite(v) || v < 0 || v > kMaxNumber)
      return bad;
    return {};
  }
  const unsigned long long v = std::strtoull(text.c_str(), &end, 0);
  if (end != text.c_str() + text.size() || errno == ERANGE) return bad;
  if (seed ? type == "INT" && v > uint64_t(INT64_MAX) : double(v) > kMaxNumber) return bad;
  return {};
}

void guard_numbers(CLI::App& app) {
  for (CLI::Option* option : app.get_options()) {
    // CLI11 appends the validators' descriptions ("INT:a number > 0"): the type is what precedes.
    const std::string full = option->get_type_name(), type = full.substr(0, full.find(':'));
    if (type != "INT" && type != "UINT" && type != "FLOAT") continue;
    const std::string name = option->get_name();
    const bool seed = name.size() >= 4 && name.compare(name.size() - 4, 4, "seed") == 0;
    option->check(CLI::Validator([type, seed](std::string& text) { return check_number_text(text, type, seed); }, ""));
  }
  for (CLI::App* sub : app.get_subcommands({})) guard_numbers(*sub);
}

}  // namespace

namespace {
// A whole line in one write. std::cerr is unbuffered, so each << is a write(2) of its own, and
// under mpirun the launcher's own notices can land between the pieces of a line (seen once in
// the suite: "inpaint-train: error: ", then Open MPI's banner, then the message).
void write_line(const std::string& line) { std::cerr << line + "\n" << std::flush; }
}  // namespace

int run(CLI::App& app, int argc, char** argv, const std::function<void()>& body) {
  guard_numbers(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 prints the message (or the help); its own codes (105, 106, ...) mean nothing to
    // scripts, so every usage error is status 1 as documented.
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }
  try {
    body();
    return 0;
  } catch (const CollectiveError& e) {
    if (e.rank == 0) write_line(app.get_name() + ": error: " + e.what());
    return kExitFailure;
  } catch (const std::exception& e) {
    write_line(app.get_name() + ": error: " + e.what());
    return kExitFailure;
  }
}

void run_on_ranks(const std::string& app_name, Communicator& ranks, const std::function<void()>& body) {
  if (ranks.size() == 1) return body();
  try {
    body();
  } catch (const CollectiveError&) {
    throw;
  } catch (const std::exception& e) {
    write_line(app_name + ": error: rank " + std::to_string(ranks.rank()) + " of " + std::to_string(ranks.size()) +
               ": " + e.what() + " (stopping every rank)");
    ranks.abort(kExitFailure);
  }
}

namespace {
CLI::Validator number_at_least(double low, bool inclusive, const std::string& what) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        double v = 0;
        size_t used = 0;
        try {
          v = std::stod(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != text.size() || used == 0 || !(inclusive ? v >= low : v > low))
          return "must be " + what + ", got '" + text + "'";
        return {};
      },
      what);
}
}  // namespace

const CLI::Validator positive = number_at_least(0, false, "a number > 0");
const CLI::Validator non_negative = number_at_least(0, true, "a number >= 0");

void fail(const std::string& message) { throw Error(message); }

void progress(const std::string& line) { write_line(line); }

std::string format_seconds(double seconds) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.2f", seconds);
  std::string s = buf;
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return s + " s";
}

void check_can_write(const std::string& path, bool force) {
  std::error_code ec;
  if (!force && std::filesystem::exists(path, ec)) fail(path + " exists (use --force to overwrite)");
}

bool same_file(const std::string& a, const std::string& b) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(a, ec) && fs::exists(b, ec)) {
    const bool same = fs::equivalent(a, b, ec);
    if (!ec) return same;
  }
  ec.clear();
  const fs::path x = fs::weakly_canonical(fs::absolute(a, ec), ec);
  if (ec) return false;
  const fs::path y = fs::weakly_canonical(fs::absolute(b, ec), ec);
  return !ec && x == y;
}

void check_not_input(const std::string& out, const std::string& input, const std::string& what) {
  if (same_file(out, input))
    fail(out + ": is " + what + " (" + input + ")" + (out == input ? "" : " under another name") +
         "; refusing to overwrite it");
}

void ensure_folder(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) fail(dir + ": exists and is not a folder");
    return;
  }
  if (!fs::create_directories(dir, ec) && ec) fail(dir + ": cannot create the folder (" + ec.message() + ")");
}

CLI::Validator mask_holes_validator() { return CLI::IsMember({"white", "black"}); }

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::CPU;
  if (name != "cuda") fail("--device '" + name + "' is neither 'cpu' nor 'cuda'");
  if (!cuda_available()) fail("--device cuda: " + cuda_unavailable_reason());
  return Device::CUDA;
}

CLI::Validator device_validator() { return CLI::IsMember({"cpu", "cuda"}); }

}  // namespace pconv::cli
