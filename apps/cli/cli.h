#pragma once
// Helpers every app shares: one way to report errors (one line on stderr, exit status 2),
// progress lines, and the checks around output files.
#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "core/distributed/communicator.h"
#include "core/dtype.h"

namespace pconv::cli {

// Exit statuses: 0 success, 1 usage error (CLI11's own), 2 any other failure.
constexpr int kExitUsage = 1;
constexpr int kExitFailure = 2;

// Parses argv into `app`, then runs `body`. CLI11 errors print CLI11's message (and --help
// prints help); a pconv::Error or other exception from `body` prints
// "<app name>: error: <message>" on stderr and returns kExitFailure. A CollectiveError (the
// same error on every rank of a multi-process run) is printed by rank 0 only.
int run(CLI::App& app, int argc, char** argv, const std::function<void()>& body);

// Runs `body` on one rank of `ranks`. A CollectiveError passes through (every rank has it and
// returns normally); any other error on one rank of several is printed with the rank and ends
// the whole job (Communicator::abort), since the other ranks would wait for this one forever.
void run_on_ranks(const std::string& app_name, Communicator& ranks, const std::function<void()>& body);

// Throws pconv::Error(message): for apps, so that run() reports it.
[[noreturn]] void fail(const std::string& message);

// A progress or status line on stderr (stdout stays for results, e.g. tables).
void progress(const std::string& line);
// "0.3 s", "12.35 s": seconds to two decimals, trailing zeros dropped, for messages (sizes:
// format_bytes of core/available_memory.h).
std::string format_seconds(double seconds);

// Fails when `path` exists and `force` is false ("<path> exists (use --force to overwrite)").
void check_can_write(const std::string& path, bool force);
// True when `a` and `b` name one file: the same device and inode when both exist (so a
// symlink, a hard link, "exp/x" and "$PWD/exp/x" are all caught); otherwise the same absolute
// path once "..", "." and symlinked folders are resolved.
bool same_file(const std::string& a, const std::string& b);
// Fails with "<out>: is <what> (<input>) under another name; refusing to overwrite it" when
// same_file(out, input). Every tool that writes checks each output against each input with it,
// before --force is considered.
void check_not_input(const std::string& out, const std::string& input, const std::string& what);
// Creates the folder (and parents) when missing; fails when the path exists and is not a folder.
void ensure_folder(const std::string& dir);

// Number validators whose messages read well ("must be a number > 0, got '0'"); CLI11's own
// PositiveNumber prints its range as 1.8e308 written out in full.
extern const CLI::Validator positive;
extern const CLI::Validator non_negative;

// CLI11 validator for "white" | "black" (the --mask-holes option).
CLI::Validator mask_holes_validator();

// "cpu" or "cuda" (the --device option); "cuda" fails with the reason when no GPU can be used
// (not built with CUDA, no device, driver error).
Device parse_device(const std::string& name);
CLI::Validator device_validator();

}  // namespace pconv::cli
