// --data folders with symlinks: loops end, each folder is entered once and
// each photo counted once, and what is left out is warned about (core/data/dataset.h list_images).
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "core/data/dataset.h"
#include "core/io/image.h"
#include "tests/test_util.h"

using namespace pconv;
namespace fs = std::filesystem;

namespace {

bool contains(const std::vector<std::string>& lines, const std::string& needle) {
  for (const std::string& l : lines)
    if (l.find(needle) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("dataset links: two loop links end, each photo is listed once, the loops are warned about") {
  const std::string dir = testing::scratch_dir("dataset-links");
  fs::create_directories(dir + "/sub/deeper");
  save_image(dir + "/a.png", testing::random_image(4, 4, 1));
  save_image(dir + "/sub/b.png", testing::random_image(4, 4, 2));
  save_image(dir + "/sub/deeper/c.png", testing::random_image(4, 4, 3));
  // Two links from sub back to its parent (the loop).
  fs::create_directory_symlink("..", dir + "/sub/l1");
  fs::create_directory_symlink("..", dir + "/sub/l2");
  // A second way into sub (sorted before it), a link to a photo and a hard link of one.
  fs::create_directory_symlink("sub", dir + "/alias");
  fs::create_symlink("a.png", dir + "/a_link.png");
  fs::create_hard_link(dir + "/sub/b.png", dir + "/b_hard.png");
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> warnings;
  const std::vector<std::string> files = list_images(dir, &warnings);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CAPTURE(files.size());
  CHECK(seconds < 5);
  // Real paths win over links; the hard link comes first by name, so it stands for sub/b.png.
  CHECK(files == std::vector<std::string>{dir + "/a.png", dir + "/b_hard.png", dir + "/sub/deeper/c.png"});
  CAPTURE(warnings.size());
  CHECK(contains(warnings, dir + "/sub/l1: a link to a folder already listed (a loop, or a second way in)"));
  CHECK(contains(warnings, dir + "/sub/l2: a link to a folder already listed"));
  CHECK(contains(warnings, dir + "/alias: a link to a folder already listed"));
  CHECK(warnings.size() == 3);

  // A link to a folder outside the tree is followed (once) like any folder.
  const std::string outside = testing::scratch_dir("dataset-links-outside");
  save_image(outside + "/d.png", testing::random_image(4, 4, 4));
  fs::create_directory_symlink(outside, dir + "/sub/out1");
  fs::create_directory_symlink(outside, dir + "/out2");
  warnings.clear();
  const std::vector<std::string> more = list_images(dir, &warnings);
  CHECK(more.size() == 4);
  CHECK(contains(more, "/out2/d.png"));
  CHECK(contains(warnings, "/sub/out1: a link to a folder already listed"));
}

namespace {

// list_images run as the user "nobody" (uid/gid 65534) in a child process when this one is root,
// for whom every folder is readable; the files and warnings come back through a pipe, one a line.
std::string list_as_nobody(const std::string& dir) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    std::string text;
    if (::setgid(65534) == 0 && ::setuid(65534) == 0) {
      try {
        std::vector<std::string> warnings;
        for (const std::string& f : list_images(dir, &warnings)) text += "file " + f + "\n";
        for (const std::string& w : warnings) text += "warning " + w + "\n";
      } catch (const std::exception& e) {
        text = std::string("error ") + e.what() + "\n";
      }
    } else {
      text = "error cannot become nobody\n";
    }
    const ssize_t written = ::write(fds[1], text.data(), text.size());
    ::_exit(written == ssize_t(text.size()) ? 0 : 1);
  }
  ::close(fds[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) text.append(buf, size_t(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return text;
}

}  // namespace

TEST_CASE("dataset links: an unreadable sub-folder is warned about and skipped") {
  const std::string dir = testing::scratch_dir("dataset-unreadable");
  fs::create_directories(dir + "/locked");
  save_image(dir + "/a.png", testing::random_image(4, 4, 1));
  save_image(dir + "/locked/b.png", testing::random_image(4, 4, 2));
  fs::permissions(dir + "/locked", fs::perms::none);
  std::string listed;
  if (::geteuid() == 0) {
    listed = list_as_nobody(dir);
  } else {
    std::vector<std::string> warnings;
    for (const std::string& f : list_images(dir, &warnings)) listed += "file " + f + "\n";
    for (const std::string& w : warnings) listed += "warning " + w + "\n";
  }
  fs::permissions(dir + "/locked", fs::perms::owner_all);
  CHECK(listed == "file " + dir + "/a.png\nwarning " + dir +
                      "/locked: cannot read this folder (Permission denied); its photos are left out\n");
  // A top folder that is a file is an error, not an empty list.
  CHECK_THROWS_WITH_AS(list_images(dir + "/a.png"), doctest::Contains("not a folder"), Error);
}

TEST_CASE("dataset links: inpaint-train on a --data folder with the issue's two loop links ends, counts 6 photos and "
          "warns") {
  // Issue 22 §4 through the binary: two links sub/l1 -> .. and sub/l2 -> .. made inpaint-train
  // hang (no output in 30 s, memory growing); one loop counted 8 files as 328 photos.
  const std::string dir = testing::scratch_dir("dataset-links-train");
  fs::create_directories(dir + "/data/sub");
  int photos = 0;
  for (const auto& entry : fs::directory_iterator(testing::source_path("data/train")))
    fs::copy_file(entry.path(), dir + (photos++ % 2 ? "/data/sub/" : "/data/") + entry.path().filename().string());
  REQUIRE(photos == 6);
  fs::create_directory_symlink("..", dir + "/data/sub/l1");
  fs::create_directory_symlink("..", dir + "/data/sub/l2");
  const testing::Result r =
      testing::run("inpaint-train",
                   {"--data", dir + "/data", "--out", dir + "/run", "--vgg", "none", "--levels", "3", "--width", "8",
                    "--size", "32", "--batch", "2", "--steps", "1", "--seed", "3"},
                   dir, 0, 60);
  CAPTURE(r.err);
  REQUIRE(r.status == 0);  // -1: still running after 60 s
  CHECK(r.err.find(" 6 photos, ") != std::string::npos);
  CHECK(r.err.find("warning: " + dir + "/data/sub/l1: a link to a folder already listed (a loop, or a second way in)") !=
        std::string::npos);
  CHECK(r.err.find("warning: " + dir + "/data/sub/l2: a link to a folder already listed") != std::string::npos);
}
