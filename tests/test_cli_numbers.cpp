// Numbers on the command line: every numeric option of every tool is
// range-checked as text before CLI11 converts it (apps/cli/cli.cpp guard_numbers), so 1e300,
// -1, nan, inf and 2^64 are usage errors (status 1, the option named), never a clamp, a
// wrap-around or an undefined cast. The options are read from each tool's --help, so an option
// added later is covered without editing this test.
#include <doctest/doctest.h>

#include <regex>
#include <set>
#include <sstream>

#include "apps/cli/cli.h"
#include "tests/test_util.h"

using namespace pconv;
using testing::quote;

namespace {

// "--name" of every option whose type is INT, UINT or FLOAT in the tool's --help.
std::vector<std::string> numeric_options(const std::string& tool, const std::string& dir) {
  const testing::AppRun help = testing::run_app(tool, "--help", dir);
  REQUIRE(help.status == 0);
  std::vector<std::string> out;
  const std::regex line(R"(^\s+(?:-\w,)?(--[\w-]+) (INT|UINT|FLOAT)\b)");
  std::istringstream in(help.out);
  for (std::string l; std::getline(in, l);) {
    std::smatch m;
    if (std::regex_search(l, m, line)) out.push_back(m[1]);
  }
  return out;
}

int run_cli(CLI::App& app, std::vector<std::string> args) {
  std::vector<char*> argv{const_cast<char*>("t")};
  for (std::string& a : args) argv.push_back(a.data());
  return cli::run(app, int(argv.size()), argv.data(), [] {});
}

}  // namespace

TEST_CASE("cli numbers: integers, seeds and reals are checked as text before conversion") {
  int64_t count = 0;
  uint64_t seed = 0;
  double gib = 0;
  int small = 0;
  auto fresh = [&] {
    auto app = std::make_unique<CLI::App>("t");
    app->add_option("--count", count);
    app->add_option("--seed", seed);
    app->add_option("--gib", gib);
    app->add_option("--small", small)->check(cli::non_negative);
    return app;
  };
  for (const char* option : {"--count", "--seed", "--gib", "--small"})
    for (const char* value : {"1e300", "-1", "nan", "inf", "-inf", "", " 5", "5x"}) {
      CAPTURE(option);
      CAPTURE(value);
      auto app = fresh();
      CHECK(run_cli(*app, {option, value}) == cli::kExitUsage);
    }
  // Past int64 / uint64: CLI11 alone would clamp to 2^63 − 1 or wrap -1 to 2^64 − 1.
  for (const char* value : {"99999999999999999999", "18446744073709551616", "2147483648"}) {
    auto app = fresh();
    CHECK(run_cli(*app, {"--count", value}) == cli::kExitUsage);
  }
  auto app = fresh();
  CHECK(run_cli(*app, {"--count", "2147483647", "--seed", "18446744073709551615", "--gib", "2.5", "--small", "0"}) == 0);
  CHECK(count == 2147483647);
  CHECK(seed == 18446744073709551615ull);
  CHECK(gib == 2.5);
  app = fresh();
  CHECK(run_cli(*app, {"--gib", "2147483648"}) == cli::kExitUsage);
  CHECK(run_cli(*fresh(), {"--seed", "18446744073709551616"}) == cli::kExitUsage);
}

TEST_CASE("cli numbers: every numeric option of every tool refuses 1e300, -1, nan and inf") {
  const std::string dir = testing::scratch_dir("cli-numbers");
  // One shell for all the runs (each start of a tool costs tens of milliseconds): per run a line
  // "<tool> <option> <value> <status> <first stderr line>".
  std::string script;
  int runs = 0;
  std::set<std::string> found;
  for (const char* tool : {"inpaint-train", "inpaint-run", "inpaint-serve", "inpaint-eval", "inpaint-masks",
                           "inpaint-bench", "inpaint-export", "inpaint-import", "bench-conv"}) {
    const std::vector<std::string> options = numeric_options(tool, dir);
    for (const std::string& option : options) found.insert(std::string(tool) + " " + option);
    const std::string binary = quote(pconv::testing::binary_dir() + "/" + tool);
    for (const std::string& option : options)
      for (const char* value : {"1e300", "-1", "nan", "inf"}) {
        script += "timeout 20 " + binary + " " + option + " " + value + " >/dev/null 2>" + quote(dir + "/err") +
                  "; s=$?; printf '%s %s %s %s %s\\n' " + tool + " " + option + " " + value +
                  " $s \"$(head -1 " + quote(dir + "/err") + ")\"\n";
        ++runs;
      }
  }
  // The --help parsing finds these known options (and so, presumably, all).
  for (const char* known : {"inpaint-run --memory-limit", "inpaint-run --hd-crop-margin", "inpaint-train --lr",
                            "inpaint-train --steps", "inpaint-train --seed", "inpaint-serve --port",
                            "inpaint-serve --timeout", "inpaint-masks --count", "inpaint-bench --seed", "bench-conv --runs"})
    CHECK_MESSAGE(found.count(known), known);
  testing::write_bytes(dir + "/runs.sh", script);
  const testing::AppRun r = [&] {
    testing::AppRun out;
    const int rc = std::system(("sh " + quote(dir + "/runs.sh") + " >" + quote(dir + "/runs.out")).c_str());
    out.status = rc;
    out.out = testing::read_bytes(dir + "/runs.out");
    return out;
  }();
  REQUIRE(r.status == 0);
  std::istringstream in(r.out);
  int seen = 0;
  for (std::string line; std::getline(in, line); ++seen) {
    CAPTURE(line);
    std::istringstream fields(line);
    std::string tool, option, value;
    int status = -1;
    fields >> tool >> option >> value >> status;
    CHECK(status == cli::kExitUsage);
    CHECK(line.find(" " + option + ": ") != std::string::npos);  // the option named
    CHECK(line.find("Could not convert") == std::string::npos);    // refused before conversion
  }
  CHECK(seen == runs);
  MESSAGE(runs << " runs: every numeric option of 9 tools with 1e300, -1, nan and inf");
}
