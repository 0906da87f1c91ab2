// Inference (apps/inference/inference.h) and the apps that use it: inpaint-run, inpaint-eval's
// --model mode, inpaint-bench. The library is called directly for the pixel-exact properties;
// the built binaries are spawned for exit statuses, one-line errors and files left behind.
#include <doctest/doctest.h>
#include <stb_image_write.h>  // the implementation lives in core/io/image.cpp
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "apps/inference/bundled_model.h"
#include "apps/inference/hd_strategy.h"
#include "apps/inference/inference.h"
#include "core/backend.h"
#include "core/cpu/dot_precision.h"
#include "core/data/imagenet.h"
#include "core/io/safetensors.h"
#include "models/texture_transfer.h"
#include "tests/test_util.h"

using namespace pconv;
namespace fs = std::filesystem;

namespace {

using testing::AppRun;
using testing::check_one_line_error;
using testing::quote;
using testing::random_image;
using testing::run_app;
using testing::read_bytes;
using testing::write_bytes;

// A rectangle of holes in the middle third.
MaskImage box_mask(int64_t h, int64_t w) {
  MaskImage m(h, w);
  for (int64_t y = h / 3; y < 2 * h / 3; ++y)
    for (int64_t x = w / 3; x < 2 * w / 3; ++x) m.set_hole(y, x);
  return m;
}

PConvUNetConfig tiny(int64_t levels = 3, int64_t width = 4) {
  PConvUNetConfig c;
  c.levels = levels;
  c.width = width;
  return c;
}

std::string write_checkpoint(const std::string& dir, const PConvUNetConfig& config = tiny(), uint64_t seed = 1) {
  PConvUNet net(config, seed);
  const std::string path = dir + "/model.safetensors";
  net.save_checkpoint(path);
  return path;
}

// A run-ready folder: model, a 40×56 image (not a multiple of 2^3) and a box mask (white holes).
struct RunFiles {
  std::string dir, model, image, mask;
  ImageU8 img;
};
// A safetensors file's header length: its first 8 bytes, little-endian.
uint64_t header_length(const std::string& file) {
  REQUIRE(file.size() >= 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | uint8_t(file[size_t(i)]);
  return n;
}

RunFiles run_files(const std::string& name) {
  RunFiles f;
  f.dir = testing::scratch_dir(name);
  f.model = write_checkpoint(f.dir);
  f.img = random_image(56, 40, 3);
  f.image = f.dir + "/photo.png";
  f.mask = f.dir + "/mask.png";
  save_image(f.image, f.img);
  save_mask(f.mask, box_mask(40, 56));
  return f;
}

RunFiles with_model(RunFiles f, const std::string& model) {
  f.model = model;
  return f;
}

std::string run_args(const RunFiles& f, const std::string& out, const std::string& extra = "") {
  return "--model " + quote(f.model) + " --image " + quote(f.image) + " --mask " + quote(f.mask) + " --out " +
         quote(out) + (extra.empty() ? "" : " " + extra);
}

}  // namespace

// ---------------------------------------------------------------- the library

TEST_CASE("run: the composite keeps known pixels bit-exact and takes holes from the network") {
  PConvUNet net(tiny(), 7);
  net.eval();
  const ImageU8 img = random_image(37, 29, 1);  // odd sizes: padded to 2^3 and cropped back
  const MaskImage mask = box_mask(29, 37);
  const inference::Inpainted r = inference::inpaint(net, img, mask, true);
  REQUIRE(r.composite.width == 37);
  REQUIRE(r.composite.height == 29);
  REQUIRE(r.raw.rgb.size() == img.rgb.size());
  int64_t holes_differing = 0;
  for (int64_t y = 0; y < 29; ++y)
    for (int64_t x = 0; x < 37; ++x)
      for (int c = 0; c < 3; ++c) {
        const size_t i = size_t((y * 37 + x) * 3 + c);
        if (mask.is_hole(y, x)) {
          CHECK(r.composite.rgb[i] == r.raw.rgb[i]);
          holes_differing += r.composite.rgb[i] != img.rgb[i];
        } else {
          CHECK(r.composite.rgb[i] == img.rgb[i]);
        }
      }
  CHECK(holes_differing > 0);
  // The raw output is the network's (normalised → 8-bit) result, known pixels included.
  CHECK(r.raw.rgb != img.rgb);
}

TEST_CASE("run: a mask without holes returns the input exactly; raw output is still produced") {
  PConvUNet net(tiny(), 2);
  const ImageU8 img = random_image(24, 16, 4);
  const inference::Inpainted r = inference::inpaint(net, img, MaskImage(16, 24, 1.0f), true);
  CHECK(r.composite.rgb == img.rgb);
  CHECK(r.raw.rgb.size() == img.rgb.size());
}

TEST_CASE("run: an all-hole mask gives the network's fill for an empty input, a flat ImageNet-mean colour") {
  PConvUNet net(tiny(), 3);
  const ImageU8 img = random_image(32, 24, 5);
  const inference::Inpainted r = inference::inpaint(net, img, MaskImage(24, 32, 0.0f));
  // Partial convolutions output 0 where their window has no known pixel, so I_out is 0 in
  // normalised space everywhere: the mean colour once un-normalised.
  const ImageU8 mean_colour =
      tensor_to_image(imagenet_denormalize(Tensor::zeros({1, 3, 1, 1})).reshape({3, 1, 1}));
  for (size_t i = 0; i < r.composite.rgb.size(); ++i) {
    CAPTURE(i);
    REQUIRE(r.composite.rgb[i] == mean_colour.rgb[i % 3]);
  }
}

TEST_CASE("run: a batch gives the pixels of one image at a time, and a training model gets its mode back") {
  PConvUNet net(tiny(), 5);
  const ImageU8 a = random_image(40, 24, 6), b = random_image(40, 24, 7);
  const MaskImage ma = box_mask(24, 40), mb = MaskImage(24, 40);
  MaskImage mb_holes = mb;
  for (int64_t x = 0; x < 40; ++x) mb_holes.set_hole(5, x);
  net.train();
  const auto batch = inference::inpaint_batch(net, {&a, &b}, {&ma, &mb_holes}, true);
  CHECK(net.is_training());
  const auto one_a = inference::inpaint(net, a, ma, true), one_b = inference::inpaint(net, b, mb_holes, true);
  REQUIRE(batch.size() == 2);
  // Eval-mode BatchNorm makes every image independent; the GEMM's blocking may differ by
  // batch size, so allow one 8-bit step.
  auto max_diff = [](const ImageU8& x, const ImageU8& y) {
    int d = 0;
    for (size_t i = 0; i < x.rgb.size(); ++i) d = std::max(d, std::abs(int(x.rgb[i]) - int(y.rgb[i])));
    return d;
  };
  CHECK(max_diff(batch[0].raw, one_a.raw) <= 1);
  CHECK(max_diff(batch[1].raw, one_b.raw) <= 1);
  CHECK(max_diff(batch[0].composite, one_a.composite) <= 1);
}

TEST_CASE("run: size disagreements are refused with both sizes named") {
  PConvUNet net(tiny(), 1);
  const ImageU8 img = random_image(32, 24, 1), other = random_image(24, 24, 2);
  CHECK_THROWS_WITH_AS(inference::inpaint(net, img, MaskImage(24, 24)), "the mask is 24×24, the image 32×24", Error);
  const MaskImage m(24, 32), m2(24, 24);
  CHECK_THROWS_AS(inference::inpaint_batch(net, {&img, &other}, {&m, &m2}, false), Error);
}

TEST_CASE("run: load_model builds the checkpoint's own architecture, in eval mode") {
  const std::string dir = testing::scratch_dir("run_load_model");
  for (const PConvUNetConfig& config : {tiny(3, 4), tiny(4, 8)}) {
    PConvUNet saved(config, 9);
    saved.save_checkpoint(dir + "/m.safetensors");
    auto net = inference::load_model(dir + "/m.safetensors");
    CHECK(net->config() == config);
    CHECK_FALSE(net->is_training());
    const auto want = saved.state_dict();
    for (const auto& [name, t] : net->state_dict()) {
      const std::string tensor = name;
      CAPTURE(tensor);
      CHECK(t.to_float_vector() == want.at(name).to_float_vector());
    }
  }
}

TEST_CASE("run: load_model skips the optimiser's state of a training checkpoint") {
  const std::string dir = testing::scratch_dir("run_load_optim");
  PConvUNet net(tiny(), 2);
  Generator gen(1);
  net.save_checkpoint(dir + "/m.safetensors", {}, {{"optim.step", Tensor::zeros({}, DType::I64)},
                                                   {"optim.m.pconv1.weight", Tensor::rand({4, 3, 7, 7}, gen)}});
  CHECK(inference::load_model(dir + "/m.safetensors")->config() == tiny());
}

TEST_CASE("run: load_model refuses missing, corrupt, truncated and foreign files in one line naming the path") {
  const std::string dir = testing::scratch_dir("run_load_errors");
  const std::string good = write_checkpoint(dir);
  const std::string bytes = read_bytes(good);
  auto error_of = [](const std::string& path) -> std::string {
    try {
      inference::load_model(path);
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  // Each message says what is wrong with the file, not only that something is.
  auto check_error = [&](const std::string& path, const std::string& needle) {
    const std::string msg = error_of(path);
    CAPTURE(msg);
    CHECK(msg.rfind(path + ": ", 0) == 0);
    CHECK(msg.find(needle) != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
  };
  check_error(dir + "/missing.safetensors", "no such file");
  write_bytes(dir + "/truncated.safetensors", bytes.substr(0, bytes.size() / 2));
  check_error(dir + "/truncated.safetensors", "past the end of the data");
  write_bytes(dir + "/header.safetensors", bytes.substr(0, 5));
  check_error(dir + "/header.safetensors", "truncated: 5 bytes");
  std::string corrupt = bytes;
  for (size_t i = 8; i < 40; ++i) corrupt[i] = char(0xff);
  write_bytes(dir + "/corrupt.safetensors", corrupt);
  check_error(dir + "/corrupt.safetensors", "header is not valid JSON");
  save_image(dir + "/image.png", random_image(8, 8, 1));
  check_error(dir + "/image.png", "not a safetensors file?");
  save_safetensors(dir + "/foreign.safetensors", {{"features.0.weight", Tensor::zeros({2, 3, 3, 3})}});
  check_error(dir + "/foreign.safetensors", "not a PConvUNet checkpoint");
  // Metadata saying 4 levels over a 3-level model's tensors.
  auto file = load_safetensors(good);
  file.metadata[PConvUNet::kConfigKey] = tiny(4, 4).to_json();
  save_safetensors(dir + "/mislabelled.safetensors", file.tensors, file.metadata);
  check_error(dir + "/mislabelled.safetensors", "a 4-level width-4 PConvUNet expects");
  save_safetensors(dir + "/rgba.safetensors", file.tensors, {{PConvUNet::kConfigKey, R"({"in_channels":4,"levels":3,"width":4})"}});
  check_error(dir + "/rgba.safetensors", "3 channels");

  // Hostile configurations over small tensors. Over the bounds: refused as such.
  save_safetensors(dir + "/wide.safetensors", file.tensors, {{PConvUNet::kConfigKey, R"({"levels":8,"width":100000})"}});
  check_error(dir + "/wide.safetensors", "width 100000 (1..1024)");
  save_safetensors(dir + "/huge.safetensors", file.tensors, {{PConvUNet::kConfigKey, R"({"levels":16,"width":1024})"}});
  check_error(dir + "/huge.safetensors", "parameters and statistics, over the limit of 1000000000");
  // Within the bounds but 2 GB of weights the file does not hold: refused by the shapes,
  // before the model is built (so the process does not grow by 2 GB).
  save_safetensors(dir + "/big.safetensors", file.tensors, {{PConvUNet::kConfigKey, R"({"levels":8,"width":256})"}});
  rusage before{}, after{};
  getrusage(RUSAGE_SELF, &before);
  check_error(dir + "/big.safetensors",
              "pconv1.bias has shape [4] in the file, an 8-level width-256 PConvUNet expects [256]");
  getrusage(RUSAGE_SELF, &after);
  CHECK(after.ru_maxrss - before.ru_maxrss < 256 * 1024);  // KiB
  // Consistent shapes but a tensor missing.
  file.tensors.erase("pconv6.bias");
  save_safetensors(dir + "/missing_tensor.safetensors", file.tensors, {{PConvUNet::kConfigKey, tiny().to_json()}});
  check_error(dir + "/missing_tensor.safetensors", "missing pconv6.bias (a 3-level width-4 PConvUNet has it)");
}

TEST_CASE("run: images over the pixel limit are refused before decoding") {
  const std::string dir = testing::scratch_dir("run_max_pixels");
  save_image(dir + "/a.png", random_image(20, 10, 1));
  CHECK_THROWS_WITH_AS(read_image_u8(dir + "/a.png", 199),
                       (dir + "/a.png: image is 20×10 (200 pixels), over the limit of 199 pixels").c_str(), Error);
  CHECK(read_image_u8(dir + "/a.png", 200).width == 20);
}

// ---------------------------------------------------------------- inpaint-run

TEST_CASE("run: inpaint-run writes the composite of any size, and --raw the network's output") {
  const RunFiles f = run_files("run_app_ok");
  const AppRun r = run_app("inpaint-run", run_args(f, f.dir + "/out.png", "--raw"), f.dir);
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  const ImageU8 out = read_image_u8(f.dir + "/out.png"), raw = read_image_u8(f.dir + "/out_raw.png");
  REQUIRE(out.width == 56);
  REQUIRE(out.height == 40);
  const MaskImage mask = box_mask(40, 56);
  int64_t wrong = 0;
  for (size_t i = 0; i < mask.known.size(); ++i)
    for (size_t c = 0; c < 3; ++c)
      wrong += mask.known[i] > 0.5f ? out.rgb[i * 3 + c] != f.img.rgb[i * 3 + c]
                                    : out.rgb[i * 3 + c] != raw.rgb[i * 3 + c];
  CHECK(wrong == 0);
  // The same pixels as the library gives.
  PConvUNet net(tiny(), 1);
  CHECK(inference::inpaint(net, f.img, mask).composite.rgb == out.rgb);
}

TEST_CASE("run: inpaint-run --texture transfer gives the library's texture_transfer of the composite") {
  const RunFiles f = run_files("run_app_texture");
  const AppRun r = run_app("inpaint-run", run_args(f, f.dir + "/out.png", "--texture transfer"), f.dir);
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  const ImageU8 out = read_image_u8(f.dir + "/out.png");
  PConvUNet net(tiny(), 1);
  const MaskImage mask = box_mask(40, 56);
  const ImageU8 plain = inference::inpaint(net, f.img, mask).composite;
  CHECK(texture_transfer(plain, mask).rgb == out.rgb);
  CHECK(out.rgb != plain.rgb);  // the noise photo has detail to give
  const AppRun bad = run_app("inpaint-run", run_args(f, f.dir + "/bad.png", "--texture noise"), f.dir);
  CHECK(bad.status != 0);
  CHECK(bad.err.find("--texture") != std::string::npos);
}

TEST_CASE("run: inpaint-run with a mask without holes writes the input exactly; --mask-holes black inverts") {
  const RunFiles f = run_files("run_app_noholes");
  save_mask(f.mask, MaskImage(40, 56));  // white = hole convention: all black
  AppRun r = run_app("inpaint-run", run_args(f, f.dir + "/out.png"), f.dir);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("no hole") != std::string::npos);
  CHECK(read_image_u8(f.dir + "/out.png").rgb == f.img.rgb);
  // Read as black = hole, the same file is all hole.
  r = run_app("inpaint-run", run_args(f, f.dir + "/out2.png", "--mask-holes black"), f.dir);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("all hole") != std::string::npos);
  const ImageU8 flat = read_image_u8(f.dir + "/out2.png");
  CHECK(flat.rgb != f.img.rgb);
  for (size_t i = 3; i < flat.rgb.size(); ++i) REQUIRE(flat.rgb[i] == flat.rgb[i % 3]);
}

TEST_CASE("run: inpaint-run converts grey and RGBA images with a note, and says once that grey masks are thresholded") {
  RunFiles f = run_files("run_app_channels");
  std::vector<uint8_t> grey(56 * 40), rgba(56 * 40 * 4);
  for (size_t i = 0; i < grey.size(); ++i) grey[i] = uint8_t(i * 7);
  for (size_t i = 0; i < rgba.size(); ++i) rgba[i] = uint8_t(i * 13);
  REQUIRE(stbi_write_png((f.dir + "/grey.png").c_str(), 56, 40, 1, grey.data(), 56));
  REQUIRE(stbi_write_png((f.dir + "/rgba.png").c_str(), 56, 40, 4, rgba.data(), 56 * 4));
  // A mask with a grey (anti-aliased) border: 200 counts as white = hole, 60 as known.
  ImageU8 m;
  m.width = 56, m.height = 40, m.channels_in_file = 3;
  m.rgb.assign(56 * 40 * 3, 0);
  for (size_t i = 0; i < 100 * 3; ++i) m.rgb[i] = 200;
  for (size_t i = 100 * 3; i < 200 * 3; ++i) m.rgb[i] = 60;
  save_image(f.mask, m);

  f.image = f.dir + "/grey.png";
  AppRun r = run_app("inpaint-run", run_args(f, f.dir + "/out_grey.png"), f.dir);
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("grey; converted to RGB") != std::string::npos);
  CHECK(r.err.find("thresholded at 50 %") != std::string::npos);
  const ImageU8 out = read_image_u8(f.dir + "/out_grey.png");
  CHECK(out.rgb[100 * 3] == grey[100]);  // known pixel, replicated grey
  CHECK(out.rgb[100 * 3 + 2] == grey[100]);

  f.image = f.dir + "/rgba.png";
  r = run_app("inpaint-run", run_args(f, f.dir + "/out_rgba.png"), f.dir);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("RGBA; the alpha channel is kept in the output") != std::string::npos);
  const ImageU8 out_rgba = read_image_u8(f.dir + "/out_rgba.png", kMaxImagePixels, ImageAlpha::Keep);
  CHECK(out_rgba.rgb[150 * 3 + 1] == rgba[150 * 4 + 1]);
  REQUIRE(out_rgba.alpha.size() == 56 * 40);
  for (size_t i = 0; i < out_rgba.alpha.size(); ++i) REQUIRE(out_rgba.alpha[i] == rgba[i * 4 + 3]);
  r = run_app("inpaint-run", run_args(f, f.dir + "/out_rgba.jpg"), f.dir);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("RGBA; alpha dropped (JPEG has none)") != std::string::npos);

  // A mask painted on a transparent layer: read by its alpha, and the tool says so.
  std::vector<uint8_t> painted(56 * 40 * 4, 0);
  for (size_t i = 0; i < 300; ++i) painted[i * 4 + 3] = 255;  // the first 300 pixels painted
  REQUIRE(stbi_write_png((f.dir + "/painted.png").c_str(), 56, 40, 4, painted.data(), 56 * 4));
  f.mask = f.dir + "/painted.png";
  r = run_app("inpaint-run", run_args(f, f.dir + "/out_painted.png"), f.dir);
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.find(f.dir + "/painted.png has transparency: masks with alpha are read by it") != std::string::npos);
  const ImageU8 out_painted = read_image_u8(f.dir + "/out_painted.png");
  CHECK(out_painted.rgb[400 * 3] == rgba[400 * 4]);  // transparent: known, copied from the input
}

TEST_CASE("run: inpaint-run refuses bad inputs in one line and writes nothing") {
  const RunFiles f = run_files("run_app_bad");
  const std::string out = f.dir + "/out.png";
  auto nothing_written = [&] { CHECK_FALSE(fs::exists(out)); };

  check_one_line_error(run_app("inpaint-run", run_args(with_model(f, f.dir + "/nope.safetensors"), out), f.dir),
                       "nope.safetensors: no such file");
  nothing_written();
  write_bytes(f.dir + "/garbage.safetensors", "not a checkpoint at all, just text");
  check_one_line_error(run_app("inpaint-run", run_args(with_model(f, f.dir + "/garbage.safetensors"), out), f.dir),
                       "garbage.safetensors: header length 7521891404167278446 is over the 100 MB limit (not a "
                       "safetensors file?)");
  const std::string ckpt = read_bytes(f.model);
  write_bytes(f.dir + "/short.safetensors", ckpt.substr(0, ckpt.size() - 100));
  check_one_line_error(run_app("inpaint-run", run_args(with_model(f, f.dir + "/short.safetensors"), out), f.dir),
                       "past the end of the data (" + std::to_string(ckpt.size() - 100 - 8 - header_length(ckpt)) +
                           " bytes; truncated file?)");
  nothing_written();

  RunFiles g = f;
  g.image = f.dir + "/missing.png";
  check_one_line_error(run_app("inpaint-run", run_args(g, out), f.dir), "missing.png: no such file");
  const std::string png = read_bytes(f.image);
  write_bytes(f.dir + "/truncated.png", png.substr(0, png.size() / 2));
  g.image = f.dir + "/truncated.png";
  check_one_line_error(run_app("inpaint-run", run_args(g, out), f.dir),
                       "truncated.png: not a readable image (stb: Corrupt PNG)");
  write_bytes(f.dir + "/corrupt.png", "\x89PNG\r\n\x1a\n garbage garbage garbage");
  g.image = f.dir + "/corrupt.png";
  check_one_line_error(run_app("inpaint-run", run_args(g, out), f.dir), "corrupt.png: not a readable image");
  nothing_written();

  // A PNG header claiming 12000×12000 pixels: refused from the header, nothing decoded.
  std::string huge = png.substr(0, 33);
  const uint32_t side = 12000;
  for (int i = 0; i < 4; ++i) huge[16 + i] = huge[20 + i] = char((side >> (24 - 8 * i)) & 0xff);
  write_bytes(f.dir + "/huge.png", huge);
  g.image = f.dir + "/huge.png";
  check_one_line_error(run_app("inpaint-run", run_args(g, out), f.dir), "over the limit");
  check_one_line_error(run_app("inpaint-run", run_args(f, out, "--max-pixels 1000"), f.dir), "over the limit of 1000");

  save_mask(f.dir + "/small_mask.png", box_mask(40, 55));
  g = f;
  g.mask = f.dir + "/small_mask.png";
  check_one_line_error(run_app("inpaint-run", run_args(g, out), f.dir), "the mask is 55×40");
  nothing_written();

  check_one_line_error(run_app("inpaint-run", run_args(f, f.dir + "/out.bmp"), f.dir), "unknown image extension");
  nothing_written();
}

// On a machine with a GPU, main excludes the test: a doctest skip, the reason printed first.
TEST_CASE("run: inpaint-run --device cuda is a one-line error on a machine without a GPU (needs no CUDA device)") {
  const RunFiles f = run_files("run_app_no_cuda");
  const std::string out = f.dir + "/out.png";
  check_one_line_error(run_app("inpaint-run", run_args(f, out, "--device cuda"), f.dir), "--device cuda: ");
  CHECK_FALSE(fs::exists(out));
}

TEST_CASE("run: inpaint-run never overwrites its input, and an existing output only with --force") {
  const RunFiles f = run_files("run_app_overwrite");
  const std::string image_bytes = read_bytes(f.image), mask_bytes = read_bytes(f.mask);
  check_one_line_error(run_app("inpaint-run", run_args(f, f.image, "--force"), f.dir), "is the input image");
  check_one_line_error(run_app("inpaint-run", run_args(f, f.dir + "/./photo.png", "--force"), f.dir),
                       "is the input image");
  check_one_line_error(run_app("inpaint-run", run_args(f, f.mask, "--force"), f.dir), "is the mask");
  CHECK(read_bytes(f.image) == image_bytes);
  CHECK(read_bytes(f.mask) == mask_bytes);

  const std::string out = f.dir + "/out.png";
  write_bytes(out, "precious");
  check_one_line_error(run_app("inpaint-run", run_args(f, out), f.dir), "exists (use --force to overwrite)");
  CHECK(read_bytes(out) == "precious");
  // --raw's second file is checked before the first is written.
  write_bytes(f.dir + "/new_raw.png", "precious");
  check_one_line_error(run_app("inpaint-run", run_args(f, f.dir + "/new.png", "--raw"), f.dir), "new_raw.png exists");
  CHECK_FALSE(fs::exists(f.dir + "/new.png"));
  const AppRun r = run_app("inpaint-run", run_args(f, out, "--force"), f.dir);
  REQUIRE(r.status == 0);
  CHECK(read_image_u8(out).width == 56);
}

TEST_CASE("run: inpaint-run refuses an output folder it cannot write into") {
  const RunFiles f = run_files("run_app_unwritable");
  write_bytes(f.dir + "/a_file", "x");
  check_one_line_error(run_app("inpaint-run", run_args(f, f.dir + "/a_file/out.png"), f.dir), "not a folder");
  if (::geteuid() != 0) {  // root writes anywhere
    fs::create_directories(f.dir + "/locked");
    fs::permissions(f.dir + "/locked", fs::perms::owner_read | fs::perms::owner_exec);
    check_one_line_error(run_app("inpaint-run", run_args(f, f.dir + "/locked/out.png"), f.dir),
                         "cannot write into this folder");
    fs::permissions(f.dir + "/locked", fs::perms::owner_all);
  }
}

TEST_CASE("run: inpaint-run folder mode pairs by name, shows progress, and checks every pair first") {
  const std::string dir = testing::scratch_dir("run_app_folders");
  const std::string model = write_checkpoint(dir);
  fs::create_directories(dir + "/images");
  fs::create_directories(dir + "/masks");
  save_image(dir + "/images/a.png", random_image(40, 24, 1));
  save_image(dir + "/images/b.jpg", random_image(40, 24, 2));
  save_image(dir + "/images/c.png", random_image(24, 40, 3));  // another size: its own batch
  save_mask(dir + "/masks/a.png", box_mask(24, 40));
  save_mask(dir + "/masks/b.png", box_mask(24, 40));
  save_mask(dir + "/masks/c.png", box_mask(40, 24));
  const std::string args = "--model " + quote(model) + " --image " + quote(dir + "/images") + " --mask " +
                           quote(dir + "/masks") + " --out " + quote(dir + "/out");
  AppRun r = run_app("inpaint-run", args + " --batch 4", dir);
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("3/3 c") != std::string::npos);
  for (const char* name : {"a", "b", "c"}) CHECK(fs::exists(dir + "/out/" + std::string(name) + ".png"));
  const ImageU8 a = read_image_u8(dir + "/images/a.png"), out_a = read_image_u8(dir + "/out/a.png");
  PConvUNet net(tiny(), 1);
  CHECK(inference::inpaint(net, a, box_mask(24, 40)).composite.rgb == out_a.rgb);

  // Outputs exist now: refused without --force.
  check_one_line_error(run_app("inpaint-run", args, dir), "exists (use --force to overwrite)");
  // A missing mask stops the run before anything is written.
  save_image(dir + "/images/d.png", random_image(40, 24, 4));
  check_one_line_error(run_app("inpaint-run", args + " --force", dir), "d");
  CHECK_FALSE(fs::exists(dir + "/out/d.png"));
  fs::remove(dir + "/images/d.png");
  // Writing the outputs into the images' folder would overwrite a.png and c.png.
  check_one_line_error(run_app("inpaint-run",
                               "--model " + quote(model) + " --image " + quote(dir + "/images") + " --mask " +
                                   quote(dir + "/masks") + " --out " + quote(dir + "/images") + " --force",
                               dir),
                       "is the input image");
  check_one_line_error(run_app("inpaint-run",
                               "--model " + quote(model) + " --image " + quote(dir + "/images") + " --mask " +
                                   quote(dir + "/masks/a.png") + " --out " + quote(dir + "/out2"),
                               dir),
                       "--mask must be one too");
}

// ---------------------------------------------------------------- inpaint-eval, inpaint-bench

TEST_CASE("run: inpaint-eval --model inpaints the images and evaluates the composites") {
  const std::string dir = testing::scratch_dir("run_eval_model");
  const std::string model = write_checkpoint(dir);
  fs::create_directories(dir + "/images");
  fs::create_directories(dir + "/masks");
  fs::create_directories(dir + "/results");
  PConvUNet net(tiny(), 1);
  for (int i = 0; i < 2; ++i) {
    const std::string name = "img" + std::to_string(i);
    const ImageU8 img = random_image(48, 32, uint64_t(i));
    save_image(dir + "/images/" + name + ".png", img);
    save_mask(dir + "/masks/" + name + ".png", box_mask(32, 48));
    save_image(dir + "/results/" + name + ".png", inference::inpaint(net, img, box_mask(32, 48)).composite);
  }
  const AppRun direct = run_app("inpaint-eval",
                                "--model " + quote(model) + " --images " + quote(dir + "/images") + " --masks " +
                                    quote(dir + "/masks"),
                                dir);
  CAPTURE(direct.err);
  REQUIRE(direct.status == 0);
  CHECK(direct.out.find("| all | 2 |") != std::string::npos);
  // The same numbers as evaluating inpaint-run's files.
  const AppRun files = run_app("inpaint-eval",
                               "--results " + quote(dir + "/results") + " --gt " + quote(dir + "/images") +
                                   " --masks " + quote(dir + "/masks"),
                               dir);
  REQUIRE(files.status == 0);
  CHECK(direct.out == files.out);
  check_one_line_error(run_app("inpaint-eval", "--masks " + quote(dir + "/masks"), dir), "--model");
}

TEST_CASE("run: inpaint-bench measures a tiny model and writes JSON; bf16 runs where the CPU has it") {
  const std::string dir = testing::scratch_dir("run_bench");
  const AppRun r = run_app("inpaint-bench",
                           "--size 32 --levels 3 --width 4 --batch 2 --infer-batch 3 --warmup 1 --iters 2 --json " +
                               quote(dir + "/bench.json"),
                           dir);
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("| train | 2 |") != std::string::npos);
  const auto j = nlohmann::json::parse(read_bytes(dir + "/bench.json"));
  REQUIRE(j["results"].size() == 3);
  CHECK(j["results"][0]["measure"] == "train");
  CHECK(j["results"][2]["batch"] == 3);
  for (const auto& m : j["results"]) {
    CHECK(m["median_s"].get<double>() > 0);
    CHECK(m["peak_memory_mib"].get<double>() > 0);
    CHECK(m["conv_gflop_per_iteration"].get<double>() > 0);  // the CPU's conv flop counter ran
  }
  CHECK(j["peak_gflops"].get<double>() > 0);
  CHECK(j["loss"] == "full_random_vgg");
  CHECK(r.out.find("conv GF/s") != std::string::npos);
  // --vgg none: the pixel and TV terms only, so fewer convolution flops per step than with VGG-16.
  const AppRun pixel = run_app("inpaint-bench", "--size 32 --levels 3 --width 4 --batch 2 --only train --warmup 0 "
                               "--iters 1 --vgg none --json " + quote(dir + "/pixel.json"), dir);
  CAPTURE(pixel.err);
  REQUIRE(pixel.status == 0);
  CHECK(pixel.out.find("pixel + TV loss") != std::string::npos);
  const auto jp = nlohmann::json::parse(read_bytes(dir + "/pixel.json"));
  CHECK(jp["loss"] == "pixel_tv");
  const double pixel_flops = jp["results"][0]["conv_gflop_per_iteration"].get<double>();
  CHECK(pixel_flops > 0);
  CHECK(pixel_flops < j["results"][0]["conv_gflop_per_iteration"].get<double>());
  const AppRun bf16 = run_app("inpaint-bench", "--size 32 --levels 3 --width 4 --batch 2 --only train --warmup 0 "
                              "--iters 1 --precision bf16", dir);
  if (cpu_has_bf16_dot()) {
    CAPTURE(bf16.err);
    CHECK(bf16.status == 0);
    CHECK(bf16.err.find("cpu bf16") != std::string::npos);
  } else {
    check_one_line_error(bf16, "AVX512-BF16");
  }
  // The bundled model's architecture: the harmonic fill is part of every measure.
  const AppRun fill = run_app("inpaint-bench", "--size 32 --levels 3 --width 4 --fill harmonic --only latency "
                              "--warmup 0 --iters 1", dir);
  CAPTURE(fill.err);
  CHECK(fill.status == 0);
  CHECK(fill.err.find("on a harmonic fill") != std::string::npos);
  const AppRun telea = run_app("inpaint-bench", "--fill telea", dir);  // a usage error: CLI11's status 1
  CHECK(telea.status == 1);
  CHECK(telea.err.find("--fill") != std::string::npos);
  check_one_line_error(run_app("inpaint-bench", "--only train,speed", dir), "'speed'");
  check_one_line_error(run_app("inpaint-bench", "--size 32 --levels 3 --width 4 --json " + quote(dir + "/bench.json"), dir),
                       "exists");
}

TEST_CASE("run: usage errors exit with status 1 and --help with 0, for every app") {
  const std::string dir = testing::scratch_dir("run_usage");
  for (const std::string app :
       {"inpaint-run", "inpaint-train", "inpaint-eval", "inpaint-masks", "inpaint-bench", "inpaint-import"}) {
    CAPTURE(app);
    const AppRun bad = run_app(app, "--no-such-option", dir);
    CHECK(bad.status == 1);
    CHECK(bad.err.find("Run with --help") != std::string::npos);  // CLI11 names the first problem
    CHECK(run_app(app, "--help", dir).status == 0);
  }
}

TEST_CASE("run: inpaint-run --hd-strategy crops or resizes large photos, says so, and keeps known pixels") {
  RunFiles f = run_files("run_hd");
  f.img = random_image(400, 300, 12);
  save_image(f.image, f.img);
  MaskImage mask(300, 400);
  for (int64_t y = 100; y < 130; ++y)
    for (int64_t x = 200; x < 260; ++x) mask.set_hole(y, x);
  save_mask(f.mask, mask);
  PConvUNet net(tiny(), 1);  // what write_checkpoint saved
  struct Case {
    std::string flags, says;
    inference::HdOptions options;
  };
  inference::HdOptions crop, resize, original;
  crop.crop_trigger_size = 100;
  crop.crop_margin = 8;
  resize.strategy = inference::HdStrategy::Resize;
  resize.resize_limit = 200;
  original.strategy = inference::HdStrategy::Original;
  for (const Case& c : {Case{"--hd-crop-trigger 100 --hd-crop-margin 8", "crop strategy, 1 pass of 80×48", crop},
                        Case{"--hd-strategy resize --hd-resize-limit 200", "resize strategy, 1 pass of 200×150", resize},
                        Case{"--hd-strategy Original", "", original}}) {
    CAPTURE(c.flags);
    const std::string out = f.dir + "/out.png";
    const AppRun r = run_app("inpaint-run", run_args(f, out, "--force " + c.flags), f.dir);
    CAPTURE(r.err);
    REQUIRE(r.status == 0);
    if (!c.says.empty()) CHECK(r.err.find(c.says) != std::string::npos);
    const ImageU8 got = read_image_u8(out);
    CHECK(got.rgb == inference::inpaint_any_size(net, f.img, mask, c.options).composite.rgb);
    for (size_t i = 0; i < mask.known.size(); ++i)
      if (mask.known[i] == 1.0f) REQUIRE(got.rgb[i * 3 + 1] == f.img.rgb[i * 3 + 1]);
  }
  CHECK(run_app("inpaint-run", run_args(f, f.dir + "/x.png", "--hd-strategy tiles"), f.dir).status == 1);
  // Without --model: the bundled model (data/model/), announced, or one line when there is none.
  const AppRun b = run_app("inpaint-run", "--image " + quote(f.image) + " --mask " + quote(f.mask) + " --out " +
                                              quote(f.dir + "/y.png"), f.dir);
  if (bundled::find_model().empty()) {
    check_one_line_error(b, "no --model given and no bundled model");
  } else {
    CAPTURE(b.err);
    CHECK(b.status == 0);
    CHECK(b.err.find("using the bundled model") != std::string::npos);
  }
}

TEST_CASE("run: inpaint-run refuses a pass that would not fit in memory, before computing") {
  const RunFiles f = run_files("run_memory");
  const std::string out = f.dir + "/out.png";
  check_one_line_error(run_app("inpaint-run", run_args(f, out, "--memory-limit 0.000001"), f.dir), "need about");
  CHECK_FALSE(fs::exists(out));
  CHECK(run_app("inpaint-run", run_args(f, out, "--memory-limit 64"), f.dir).status == 0);
  CHECK(fs::exists(out));
}

TEST_CASE("run: the memory estimate is the pass's activations plus the images, within 0.6 GiB per megapixel") {
  const PConvUNetConfig paper{8, 64, 3};
  const int64_t one = inference::forward_memory_bytes(paper, 1, 512, 512);
  CHECK(one == paper.inference_bytes(1, 512, 512) + int64_t(16 * 4) * 512 * 512 + (int64_t(64) << 20));
  // Activations scale with the batch and the pixels (sizes that need no padding; 64 KiB are
  // for the small tensors) ...
  const int64_t small = int64_t(64) << 10;
  CHECK(paper.inference_bytes(2, 512, 512) == 2 * paper.inference_bytes(1, 512, 512));
  CHECK(paper.inference_bytes(1, 1024, 1024) - small == 4 * (paper.inference_bytes(1, 512, 512) - small));
  // ... padded sizes cost the padded size and the copies.
  CHECK(paper.inference_bytes(1, 500, 510) > paper.inference_bytes(1, 512, 512));
  // At least the last layer's input (64 upsampled + 3 skip channels) and the input, in f32;
  // and within the target of 0.6 GiB per megapixel.
  const double pixels = 2048.0 * 2048.0, gib = double(int64_t(1) << 30);
  const int64_t big = inference::forward_memory_bytes(paper, 1, 2048, 2048);
  CHECK(double(big) > 4 * pixels * (67 + 3));
  CHECK(double(big) / gib / (pixels / 1e6) < 0.6);
  CHECK(inference::available_memory_bytes() > 0);
}

TEST_CASE("run: --fill-only writes the harmonic fill without a network; it refuses --model") {
  const std::string dir = testing::scratch_dir("run-fill-only");
  const ImageU8 img = testing::random_image(40, 24, 5);
  MaskImage mask(24, 40);
  for (int y = 6; y < 18; ++y)
    for (int x = 8; x < 30; ++x) mask.set_hole(y, x);
  save_image(dir + "/a.png", img);
  save_mask(dir + "/m.png", mask);
  AppRun r = run_app("inpaint-run", "--fill-only --image " + quote(dir + "/a.png") + " --mask " + quote(dir + "/m.png") +
                                        " --out " + quote(dir + "/out.png"), dir);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("harmonic fill (no network)") != std::string::npos);
  const ImageU8 out = read_image_u8(dir + "/out.png");
  CHECK(out.rgb == inference::harmonic_inpaint(img, mask).rgb);
  // Known pixels exact; a hole pixel is near the mean of its four neighbours (8-bit rounding).
  for (int y = 0; y < 24; ++y)
    for (int x = 0; x < 40; ++x)
      for (int c = 0; c < 3; ++c) {
        const auto at = [&](int yy, int xx) { return double(out.rgb[size_t((yy * 40 + xx) * 3 + c)]); };
        if (mask.known[size_t(y * 40 + x)] >= 0.5f)
          CHECK(at(y, x) == img.rgb[size_t((y * 40 + x) * 3 + c)]);
        else
          CHECK(std::abs(at(y, x) - (at(y - 1, x) + at(y + 1, x) + at(y, x - 1) + at(y, x + 1)) / 4) <= 1.01);
      }
  r = run_app("inpaint-run", "--fill-only --model x.safetensors --image " + quote(dir + "/a.png") + " --mask " +
                                 quote(dir + "/m.png") + " --out " + quote(dir + "/o2.png"), dir);
  CHECK(r.status != 0);
  CHECK(r.err.find("excludes") != std::string::npos);
}
