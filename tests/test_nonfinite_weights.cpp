// Models with NaN or infinite weights: refused by every loader in one line
// naming the tensor, instead of inpainting every hole black with exit status 0
// (core/finite.h; Module::load_state_dict, inpaint-export, inpaint-import).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "apps/inference/inference.h"
#include "core/data/masks.h"
#include "core/finite.h"
#include "core/io/image.h"
#include "models/pconv_unet.h"
#include "tests/test_util.h"

using namespace pconv;
namespace fs = std::filesystem;
using testing::check_one_line_error;
using testing::quote;
using testing::run_app;

namespace {

// A small model saved with one weight set to `bad` (element 5 of pconv3.weight).
std::string broken_model(const std::string& dir, float bad) {
  PConvUNet net(PConvUNetConfig{3, 4, 3}, 1);
  net.layer(3).weight().data<float>()[5] = bad;
  const std::string path = dir + "/broken.safetensors";
  net.save_checkpoint(path);
  return path;
}

}  // namespace

TEST_CASE("non-finite weights: found in every floating type, named with the element") {
  Tensor t = Tensor::zeros({3, 4});
  CHECK(first_non_finite(t) == -1);
  t.data<float>()[7] = std::numeric_limits<float>::quiet_NaN();
  CHECK(first_non_finite(t) == 7);
  CHECK_THROWS_WITH_AS(check_finite("w", t), doctest::Contains("w holds NaN at element 7 of 12"), Error);
  t.data<float>()[7] = 0;
  t.data<float>()[2] = -std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH_AS(check_finite("w", t), doctest::Contains("w holds -inf at element 2 of 12"), Error);
  CHECK(first_non_finite(t.to(DType::F64)) == 2);
  CHECK(first_non_finite(t.to(DType::F16)) == 2);
  CHECK(first_non_finite(t.to(DType::BF16)) == 2);
  // f32's largest value overflows f16 but is finite: not this check's business.
  t.data<float>()[2] = 3e38f;
  CHECK(first_non_finite(t) == -1);
  CHECK(first_non_finite(Tensor::zeros({2}, DType::I64)) == -1);
}

TEST_CASE("non-finite weights: load_model, inpaint-run and inpaint-export refuse them in one line") {
  const std::string dir = testing::scratch_dir("nonfinite");
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    CAPTURE(bad);
    const std::string model = broken_model(dir, bad);
    const std::string what = std::isnan(bad) ? "pconv3.weight holds NaN at element 5" : "pconv3.weight holds inf at element 5";
    CHECK_THROWS_WITH_AS(inference::load_model(model), doctest::Contains(what.c_str()), Error);
    CHECK_THROWS_WITH_AS(PConvUNet(PConvUNetConfig{3, 4, 3}, 1).load_checkpoint(model), doctest::Contains(what.c_str()), Error);

    save_image(dir + "/photo.png", testing::random_image(16, 16, 1));
    MaskImage mask(16, 16);
    mask.set_hole(4, 4);
    save_mask(dir + "/mask.png", mask);
    check_one_line_error(run_app("inpaint-run", "--model " + quote(model) + " --image " + quote(dir + "/photo.png") +
                                                    " --mask " + quote(dir + "/mask.png") + " --out " +
                                                    quote(dir + "/out.png"),
                                 dir),
                         what);
    CHECK_FALSE(fs::exists(dir + "/out.png"));
    // inpaint-export names the tensor whatever --dtype is, and blames no storage type.
    for (const char* dtype : {"f32", "f16", "bf16"}) {
      CAPTURE(dtype);
      const testing::AppRun r = run_app("inpaint-export", "--model " + quote(model) + " --out " +
                                                              quote(dir + "/exported.safetensors") + " --dtype " + dtype,
                                        dir);
      check_one_line_error(r, what);
      CHECK(r.err.find("cannot store") == std::string::npos);
      CHECK(r.err.find("--dtype") == std::string::npos);
      CHECK_FALSE(fs::exists(dir + "/exported.safetensors"));
    }
  }
}
