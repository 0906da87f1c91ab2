// Outputs compared with inputs by identity, not by spelling: every tool that
// writes refuses an output that is one of its inputs under another name (a relative and an
// absolute path, "..", a symlink, a hard link), even with --force (apps/cli/cli.h same_file).
#include <doctest/doctest.h>

#include <filesystem>

#include "apps/cli/cli.h"
#include "core/data/masks.h"
#include "core/io/image.h"
#include "models/pconv_unet.h"
#include "tests/test_util.h"

using namespace pconv;
namespace fs = std::filesystem;
using testing::check_one_line_error;
using testing::quote;
using testing::read_bytes;
using testing::run_app;

namespace {

// The same file spelled five ways: as given, relative to the working directory (the tests run
// from the repository root), through "..", and through a symlink and a hard link made in `dir`.
std::vector<std::string> other_names(const std::string& dir, const std::string& file) {
  const std::string name = fs::path(file).filename().string(), folder = fs::path(file).parent_path().string();
  const std::string relative = fs::relative(file, fs::current_path()).string();
  fs::create_directories(folder + "/side");
  fs::create_directories(dir);
  fs::create_symlink(file, dir + "/link-" + name);
  fs::create_hard_link(file, dir + "/hard-" + name);
  return {file, relative, folder + "/side/../" + name, dir + "/link-" + name, dir + "/hard-" + name};
}

}  // namespace

TEST_CASE("output identity: same_file sees through relative paths, '..', symlinks and hard links") {
  const std::string dir = testing::scratch_dir("identity-unit");
  testing::write_bytes(dir + "/a.bin", "a");
  testing::write_bytes(dir + "/b.bin", "a");  // equal bytes, another file
  for (const std::string& name : other_names(dir, dir + "/a.bin")) {
    CAPTURE(name);
    CHECK(cli::same_file(name, dir + "/a.bin"));
    CHECK(cli::same_file(dir + "/a.bin", name));
    CHECK_FALSE(cli::same_file(name, dir + "/b.bin"));
  }
  // Files that do not exist yet: the same path once normalised, or not.
  CHECK(cli::same_file(dir + "/new.bin", dir + "/side/../new.bin"));
  CHECK_FALSE(cli::same_file(dir + "/new.bin", dir + "/new2.bin"));
}

TEST_CASE("output identity: inpaint-export, inpaint-import and inpaint-run never write over an input") {
  const std::string dir = testing::scratch_dir("identity-apps");
  // A training checkpoint replaced by its own export through --force.
  fs::create_directories(dir + "/exp");
  const std::string ckpt = dir + "/exp/ck.safetensors";
  PConvUNet(PConvUNetConfig{3, 4, 3}, 1).save_checkpoint(ckpt);
  const std::string before = read_bytes(ckpt);
  for (const std::string& out : other_names(dir + "/exp", ckpt)) {
    CAPTURE(out);
    check_one_line_error(run_app("inpaint-export", "--model " + quote(ckpt) + " --out " + quote(out) + " --force", dir),
                         "is the --model file (" + ckpt + ")");
  }
  CHECK(read_bytes(ckpt) == before);

  // inpaint-import: an output named like a checkpoint that is the foreign file.
  const std::string from = dir + "/foreign.pth";
  testing::write_bytes(from, "not really a checkpoint");
  fs::create_symlink(from, dir + "/foreign-link.safetensors");
  fs::create_hard_link(from, dir + "/foreign-hard.safetensors");
  for (const char* out : {"foreign-link.safetensors", "foreign-hard.safetensors"}) {
    CAPTURE(out);
    check_one_line_error(
        run_app("inpaint-import", "--from " + quote(from) + " --out " + quote(dir + "/" + out) + " --force", dir),
        "is the --from file");
  }
  CHECK(read_bytes(from) == "not really a checkpoint");

  // inpaint-run: the output is the image or the mask under another name.
  save_image(dir + "/photo.png", testing::random_image(16, 16, 1));
  MaskImage mask(16, 16);
  mask.set_hole(3, 3);
  save_mask(dir + "/mask.png", mask);
  const std::string photo = read_bytes(dir + "/photo.png");
  for (const std::string& out : other_names(dir + "/run", dir + "/photo.png")) {
    CAPTURE(out);
    check_one_line_error(run_app("inpaint-run", "--fill-only --image " + quote(dir + "/photo.png") + " --mask " +
                                                    quote(dir + "/mask.png") + " --out " + quote(out) + " --force",
                                 dir),
                         "is the input image");
  }
  fs::create_hard_link(dir + "/mask.png", dir + "/mask-hard.png");
  check_one_line_error(run_app("inpaint-run", "--fill-only --image " + quote(dir + "/photo.png") + " --mask " +
                                                  quote(dir + "/mask.png") + " --out " + quote(dir + "/mask-hard.png") +
                                                  " --force",
                               dir),
                       "is the mask");
  CHECK(read_bytes(dir + "/photo.png") == photo);

  // Two outputs of one run that are one file: inpaint-eval's two CSVs.
  fs::create_directories(dir + "/images");
  fs::create_directories(dir + "/masks");
  check_one_line_error(run_app("inpaint-eval", "--images " + quote(dir + "/images") + " --masks " +
                                                   quote(dir + "/masks") + " --csv " + quote(dir + "/t.csv") +
                                                   " --per-image-csv " + quote(dir + "/side/../t.csv"),
                               dir),
                       "is the --csv file");

  // inpaint-eval's CSVs over the files it reads: a truth, a mask, a result, the model.
  for (const char* sub : {"res", "gt", "m"}) fs::create_directories(dir + "/eval/" + sub);
  save_image(dir + "/eval/res/a.png", testing::random_image(16, 16, 2));
  save_image(dir + "/eval/gt/a.png", testing::random_image(16, 16, 1));
  save_mask(dir + "/eval/m/a.png", mask);
  const std::string truth = read_bytes(dir + "/eval/gt/a.png"), mask_bytes = read_bytes(dir + "/eval/m/a.png");
  const std::string folders = "--results " + quote(dir + "/eval/res") + " --gt " + quote(dir + "/eval/gt") +
                              " --masks " + quote(dir + "/eval/m") + " --force ";
  for (const std::string& out : other_names(dir + "/eval/links", dir + "/eval/gt/a.png")) {
    CAPTURE(out);
    check_one_line_error(run_app("inpaint-eval", folders + "--csv " + quote(out), dir), "is a ground-truth image");
    check_one_line_error(run_app("inpaint-eval", folders + "--per-image-csv " + quote(out), dir),
                         "is a ground-truth image");
  }
  check_one_line_error(run_app("inpaint-eval", folders + "--csv " + quote(dir + "/eval/m/../m/a.png"), dir), "is a mask");
  check_one_line_error(run_app("inpaint-eval", folders + "--csv " + quote(dir + "/eval/res/a.png"), dir),
                       "is a result image");
  CHECK(read_bytes(dir + "/eval/gt/a.png") == truth);
  CHECK(read_bytes(dir + "/eval/m/a.png") == mask_bytes);
  fs::create_hard_link(ckpt, dir + "/eval/model-hard.csv");
  check_one_line_error(run_app("inpaint-eval", "--images " + quote(dir + "/eval/gt") + " --masks " +
                                                   quote(dir + "/eval/m") + " --model " + quote(ckpt) +
                                                   " --per-image-csv " + quote(dir + "/eval/model-hard.csv") + " --force",
                               dir),
                       "is the --model file");
  CHECK(read_bytes(ckpt) == before);
  // A CSV beside them, not one of them, is written.
  const testing::AppRun ok = run_app("inpaint-eval", folders + "--csv " + quote(dir + "/eval/t.csv"), dir);
  CAPTURE(ok.err);
  CHECK(ok.status == 0);
  CHECK(read_bytes(dir + "/eval/t.csv").rfind("bucket,", 0) == 0);
}
