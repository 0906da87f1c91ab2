// End to end through the built programs: inpaint-train on the bundled photos (loss goes down,
// resume, Ctrl-C, full disk, one-line errors), then inpaint-run and inpaint-eval on its model.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "apps/training/trainer.h"
#include "core/cpu/dot_precision.h"
#include "core/data/masks.h"
#include "core/io/safetensors.h"
#include "tests/test_util.h"

using namespace pconv;
namespace fs = std::filesystem;

namespace {

using testing::read_bytes;

std::vector<std::vector<double>> read_csv(const std::string& path) {
  std::vector<std::vector<double>> rows;
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::vector<double> row;
    std::stringstream ss(line);
    try {
      for (std::string f; std::getline(ss, f, ',');) row.push_back(std::stod(f));
    } catch (const std::exception&) {
      break;  // a line the running app is still writing
    }
    rows.push_back(row);
  }
  return rows;
}

using testing::run;
using testing::Result;
using testing::spawn;
using testing::Spawned;
using testing::wait_exit;

// The tiny model of the CLI tests (3 levels, width 8, 32×32, batch 2).
std::vector<std::string> tiny_args(const std::string& out, int64_t steps) {
  return {"--data", testing::source_path("data/train"), "--out", out, "--vgg", "none", "--levels", "3",
          "--width", "8", "--size", "32", "--batch", "2", "--steps", std::to_string(steps),
          "--seed", "3", "--log-every", "1"};
}

std::vector<std::string> plus(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The stderr of a failed app: exactly one line, "inpaint-train: error: ...".
void check_one_line_error(const Result& r, const std::string& expected) {
  INFO(r.err);
  CHECK(r.status != 0);
  CHECK(r.err.find("inpaint-train: error: ") != std::string::npos);
  CHECK(r.err.find(expected) != std::string::npos);
  const std::string last = r.err.substr(r.err.rfind("inpaint-train: error: "));
  CHECK(std::count(last.begin(), last.end(), '\n') == 1);
}

}  // namespace

TEST_CASE("e2e: inpaint-train learns on the bundled photos, resumes, and its model runs") {
  const std::string dir = testing::scratch_dir("e2e-train");
  const std::string out = dir + "/run";
  const std::vector<std::string> common{"--data", testing::source_path("data/train"), "--val",
                                        testing::source_path("data/val"), "--out", out, "--vgg", "none",
                                        "--levels", "4", "--width", "16", "--size", "64", "--batch", "4",
                                        "--save-every", "20", "--val-every", "20", "--sample-every", "40",
                                        "--log-every", "10"};
  const auto t0 = std::chrono::steady_clock::now();
  Result r = run("inpaint-train", plus(common, {"--steps", "40", "--seed", "1"}), dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("step 40/40") != std::string::npos);
  CHECK(r.err.find("img/s") != std::string::npos);
  CHECK(r.err.find("ETA") != std::string::npos);

  // The loss on the fixed validation pairs goes down, and the metrics improve.
  auto val = read_csv(out + "/val.csv");
  REQUIRE(val.size() == 3);  // steps 0, 20, 40
  MESSAGE("val loss " << val[0][1] << " -> " << val[2][1] << ", PSNR " << val[0][2] << " -> " << val[2][2]);
  CHECK(val[2][1] < 0.5 * val[0][1]);
  CHECK(val[2][2] > val[0][2] + 3);  // PSNR, dB
  CHECK(val[2][4] < val[0][4]);      // l1 %
  CHECK(fs::exists(out + "/loss.png"));
  CHECK(fs::exists(out + "/samples/step-00000040.png"));

  // Resume from the run folder, on to step 60: no model options repeated.
  r = run("inpaint-train", {"--data", testing::source_path("data/train"), "--val", testing::source_path("data/val"),
                            "--out", out, "--vgg", "none", "--resume", out, "--steps", "60", "--val-every", "20"},
          dir);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("from step 40 to 60") != std::string::npos);
  CHECK(read_csv(out + "/log.csv").size() == 60);
  val = read_csv(out + "/val.csv");
  REQUIRE(val.size() == 4);
  CHECK(val[3][0] == 60);
  const std::string model = out + "/checkpoints/step-00000060.safetensors";
  REQUIRE(fs::exists(model));
  MESSAGE("train 40 + resume 20 steps: "
          << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s");

  // inpaint-run fills a generated hole in a validation photo; inpaint-eval scores it. Both are
  // built with the tests (add_dependencies in CMakeLists.txt): not finding them is a failure.
  REQUIRE(fs::exists(pconv::testing::binary_dir() + "/inpaint-run"));
  REQUIRE(fs::exists(pconv::testing::binary_dir() + "/inpaint-eval"));
  fs::create_directories(dir + "/gt"), fs::create_directories(dir + "/masks"), fs::create_directories(dir + "/results");
  fs::copy_file(testing::source_path("data/val/brushes.jpg"), dir + "/gt/brushes.jpg");
  const ImageU8 photo = read_image_u8(dir + "/gt/brushes.jpg");
  std::mt19937_64 rng(5);
  save_mask(dir + "/masks/brushes.png", generate_mask(photo.height, photo.width, 0.2, rng));
  r = run("inpaint-run", {"--model", model, "--image", dir + "/gt/brushes.jpg", "--mask", dir + "/masks/brushes.png",
                          "--out", dir + "/results/brushes.png"},
          dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const ImageU8 result = read_image_u8(dir + "/results/brushes.png");
  CHECK(result.width == photo.width);
  CHECK(result.height == photo.height);
  r = run("inpaint-eval", {"--results", dir + "/results", "--gt", dir + "/gt", "--masks", dir + "/masks"}, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("| all |") != std::string::npos);
  MESSAGE(r.out);
}

TEST_CASE("e2e: SIGINT finishes the step, saves and exits 0; the run resumes from there") {
  const std::string dir = testing::scratch_dir("e2e-sigint");
  const std::string out = dir + "/run";
  const Spawned s = spawn("inpaint-train", plus(tiny_args(out, 1000000), {"--save-every", "1000000"}), dir);
  // Wait for a few logged steps, so the signal lands in the middle of training.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (read_csv(out + "/log.csv").size() < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ::kill(s.pid, SIGINT);
  const int status = wait_exit(s);
  const std::string err = read_bytes(s.err);
  INFO(err);
  CHECK(status == 0);
  CHECK(err.find("stopped at step") != std::string::npos);
  const auto log = read_csv(out + "/log.csv");
  REQUIRE(log.size() >= 3);
  const int64_t last = int64_t(log.back()[0]);
  const auto ckpts = list_checkpoints(out);
  REQUIRE(ckpts.size() == 1);
  CHECK(load_safetensors(ckpts[0]).metadata.at("train.step") == std::to_string(last));

  const Result r = run("inpaint-train", plus(tiny_args(out, last + 2), {"--resume", out}), dir);
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(int64_t(read_csv(out + "/log.csv").back()[0]) == last + 2);
}

TEST_CASE("e2e: a full disk while saving fails cleanly and keeps the previous checkpoint") {
  const std::string dir = testing::scratch_dir("e2e-full-disk");
  const std::string out = dir + "/run";
  Result r = run("inpaint-train", plus(tiny_args(out, 2), {"--keep", "1"}), dir);
  REQUIRE(r.status == 0);
  const std::string previous = out + "/checkpoints/step-00000002.safetensors";
  const std::string bytes = read_bytes(previous);
  REQUIRE(bytes.size() > 20000);

  // Files may grow to half a checkpoint: the logs fit, the next checkpoint does not.
  r = run("inpaint-train", plus(tiny_args(out, 4), {"--resume", out, "--keep", "1"}), dir, bytes.size() / 2);
  INFO(r.err);
  CHECK(r.status != 0);
  CHECK(r.err.find("step-00000004.safetensors") != std::string::npos);
  CHECK(read_bytes(previous) == bytes);  // byte-identical, not pruned by --keep 1
  for (const auto& entry : fs::directory_iterator(out + "/checkpoints"))
    CHECK(entry.path().filename().string().find(".tmp") == std::string::npos);  // no temp file left
  CHECK(list_checkpoints(out) == std::vector<std::string>{previous});
}

TEST_CASE("e2e: inpaint-train errors are one line with a non-zero exit") {
  const std::string dir = testing::scratch_dir("e2e-errors");
  const std::string out = dir + "/run";
  SUBCASE("no --vgg") {
    auto args = tiny_args(out, 2);
    args.erase(args.begin() + 4, args.begin() + 6);  // "--vgg none"
    const Result r = run("inpaint-train", args, dir);
    check_one_line_error(r, "python3 scripts/export_vgg16.py");
    check_one_line_error(r, "--vgg none");
  }
  SUBCASE("--precision bf16 off the CPU") {
    check_one_line_error(
        run("inpaint-train", plus(tiny_args(out, 2), {"--precision", "bf16", "--device", "cuda"}), dir),
        "--precision bf16 is implemented on the CPU only");
  }
  SUBCASE("missing data folder") {
    auto args = tiny_args(out, 2);
    args[1] = dir + "/no-photos";
    check_one_line_error(run("inpaint-train", args, dir), "no-photos: not a folder");
  }
  SUBCASE("corrupt --resume") {
    write_file_atomic(dir + "/bad.safetensors", "not a safetensors file");
    check_one_line_error(run("inpaint-train", plus(tiny_args(out, 2), {"--resume", dir + "/bad.safetensors"}), dir),
                         "bad.safetensors: ");
  }
  SUBCASE("a huge learning rate diverges: the step and the term are named") {
    const Result r = run("inpaint-train", plus(tiny_args(out, 50), {"--lr", "1e9", "--save-every", "1"}), dir);
    check_one_line_error(r, "step ");
    CHECK((r.err.find(" loss is ") != std::string::npos || r.err.find("non-finite") != std::string::npos));
    // What was saved before is finite: it loads and resumes its own step.
    int64_t non_finite = 0;
    for (const std::string& c : list_checkpoints(out))
      for (const auto& [name, t] : load_safetensors(c).tensors)
        for (double v : t.to_double_vector()) non_finite += !std::isfinite(v);
    CHECK(non_finite == 0);
    MESSAGE(r.err);
  }
}

TEST_CASE("e2e: inpaint-train --precision bf16 is a one-line error on a CPU without AVX512-BF16 (needs a CPU without "
          "AVX512-BF16)" * doctest::skip(cpu_has_bf16_dot())) {
  const std::string dir = testing::scratch_dir("e2e-no-bf16");
  check_one_line_error(run("inpaint-train", plus(tiny_args(dir + "/run", 2), {"--precision", "bf16"}), dir),
                       "AVX512-BF16");
}

// On a machine with a GPU, main excludes the test: a doctest skip, the reason printed first.
TEST_CASE("e2e: inpaint-train --device cuda is a one-line error on a machine without a GPU (needs no CUDA device)") {
  const std::string dir = testing::scratch_dir("e2e-no-cuda");
  check_one_line_error(run("inpaint-train", plus(tiny_args(dir + "/run", 2), {"--device", "cuda"}), dir),
                       "--device cuda: ");
}
