// The bundled model's lookup (apps/inference/bundled_model.h) on fake layouts: an install
// prefix (bin/ beside share/pconv/), a build folder in a source tree (beside data/model/), a
// prefix moved elsewhere, and $PCONV_MODEL. The model is found relative to the binary only, so
// a moved prefix finds its own copy and a prefix whose model is gone finds none.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "apps/inference/bundled_model.h"
#include "tests/test_util.h"

using namespace pconv;
namespace fs = std::filesystem;

namespace {

std::string touch(const fs::path& file) {
  fs::create_directories(file.parent_path());
  std::ofstream(file) << "weights";
  return fs::canonical(file).string();
}

}  // namespace

TEST_CASE("bundled model: found in share/pconv/ beside an installed binary, and nowhere else once moved") {
  const fs::path dir = testing::scratch_dir("bundled_lookup_prefix");
  const fs::path prefix = dir / "prefix";
  fs::create_directories(prefix / "bin");
  CHECK(bundled::find_model_from((prefix / "bin").string(), "") == "");
  const std::string model = touch(prefix / "share" / "pconv" / bundled::kFileName);
  CHECK(bundled::find_model_from((prefix / "bin").string(), "") == model);

  // The whole prefix moved: the moved binary finds the moved model, the old place has nothing.
  const fs::path moved = dir / "elsewhere" / "opt";
  fs::create_directories(moved.parent_path());
  fs::rename(prefix, moved);
  CHECK(bundled::find_model_from((moved / "bin").string(), "") ==
        fs::canonical(moved / "share" / "pconv" / bundled::kFileName).string());
  CHECK(bundled::find_model_from((prefix / "bin").string(), "") == "");
  // A binary copied out of its prefix does not fall back on anything.
  fs::create_directories(dir / "lonely" / "bin");
  CHECK(bundled::find_model_from((dir / "lonely" / "bin").string(), "") == "");
}

TEST_CASE("bundled model: a build folder inside the source tree finds data/model/, the installed copy first") {
  const fs::path src = testing::scratch_dir("bundled_lookup_source");
  fs::create_directories(src / "build-x");
  const std::string in_tree = touch(src / "data" / "model" / bundled::kFileName);
  CHECK(bundled::find_model_from((src / "build-x").string(), "") == in_tree);
  const std::string installed = touch(src / "share" / "pconv" / bundled::kFileName);
  CHECK(bundled::find_model_from((src / "build-x").string(), "") == installed);
}

TEST_CASE("bundled model: $PCONV_MODEL comes first when it exists, and is skipped when it does not") {
  const fs::path dir = testing::scratch_dir("bundled_lookup_env");
  fs::create_directories(dir / "bin");
  const std::string installed = touch(dir / "share" / "pconv" / bundled::kFileName);
  const std::string chosen = touch(dir / "mine.safetensors");
  CHECK(bundled::find_model_from((dir / "bin").string(), chosen) == chosen);
  CHECK(bundled::find_model_from((dir / "bin").string(), (dir / "missing.safetensors").string()) == installed);
  CHECK(bundled::find_model_from("", chosen) == chosen);
  CHECK(bundled::find_model_from("", "") == "");
}

namespace {

// This test binary's build folder is inside the source tree and data/model/ holds the model.
bool in_tree_build_with_model() {
  std::error_code ec;
  const fs::path source = fs::canonical(pconv::testing::source_dir(), ec), build = fs::canonical(pconv::testing::binary_dir(), ec);
  return !ec && build.parent_path() == source && fs::exists(source / "data" / "model" / bundled::kFileName);
}

}  // namespace

TEST_CASE("bundled model: the running binary's folder is its own") {
  CHECK(fs::equivalent(bundled::executable_dir(), pconv::testing::binary_dir()));
}

TEST_CASE("bundled model: this build folder finds the source tree's data/model/ (needs an in-tree build)" *
          doctest::skip(!in_tree_build_with_model())) {
  const fs::path model = fs::path(pconv::testing::source_dir()) / "data" / "model" / bundled::kFileName;
  CHECK(bundled::find_model_from(pconv::testing::binary_dir(), "") == fs::canonical(model).string());
}
