// Importing PyTorch PConv UNets (core/io/torch_checkpoint.h, models/pconv_import.h, inpaint-import).
// tests/data/import/ was made by scripts/torch_pconv_reference.py with Debian's python3-torch:
// re-implementations of naoto0804's net.py (current and early layouts) and of a UNet on
// NVIDIA's PartialConv2d, random weights, BatchNorm statistics measured on photos with holes,
// saved by torch.save in both formats, and PyTorch's own output on image.png / mask.png
// (*_expected.safetensors: the raw output; *_expected.png: the 8-bit composite). pconv must
// reproduce them: the raw output to float rounding, the composite within 1 level.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "core/autograd.h"
#include "core/data/imagenet.h"
#include "core/data/masks.h"
#include "core/io/image.h"
#include "core/io/pickle.h"
#include "core/io/safetensors.h"
#include "core/io/torch_checkpoint.h"
#include "core/io/zip_archive.h"
#include "core/ops.h"
#include "models/pconv_import.h"
#include "tests/test_util.h"

using namespace pconv;
namespace fs = std::filesystem;
using testing::quote;
using testing::read_bytes;
using testing::run_app;
using testing::source_path;
using testing::write_bytes;
using namespace std::string_literals;

namespace {

std::string data(const std::string& name) { return source_path("tests/data/import/" + name); }

struct Case {
  std::string file;
  const char* expected;  // stem of *_expected.{safetensors,png}
  const char* layout;
  PConvUNetConfig config;
  bool multi_channel;
};

const Case kCases[] = {
    {"naoto_zip.pth", "naoto", "naoto", {5, 2, 3}, false},
    {"naoto_legacy.pth", "naoto", "naoto", {5, 2, 3}, false},
    {"early_legacy.pth", "early", "naoto-early", {4, 2, 3}, false},
    {"nvidia_zip.pth", "nvidia", "nvidia", {4, 2, 3}, true},
    // weight_maskUpdater saved (C_out×C_in×k×k): multi_channel is known without the flag.
    {"nvidia_updater_legacy.pth", "nvidia", "nvidia", {4, 2, 3}, false},
};

// Files in torch.save's zip format need libzip. Their tests are separate test cases, "(needs
// libzip)" in their names, that a build without it (a bare GPU machine) reports as doctest
// skips, not as passes of a loop that left them out; that build's refusal is tested instead.
bool is_zip(const std::string& file) { return file.find("legacy") == std::string::npos && file.find(".pth") != std::string::npos; }
const auto kNeedsLibzip = doctest::skip(!zip_supported());
enum class Format { Legacy, Zip };
// The known layouts' files of one format: all of them must be tested.
std::vector<Case> cases(Format format) {
  std::vector<Case> out;
  for (const Case& c : kCases)
    if (is_zip(c.file) == (format == Format::Zip)) out.push_back(c);
  REQUIRE(out.size() >= 2);
  return out;
}

ImportedModel import_case(const Case& c) {
  ImportOptions options;
  options.nvidia_multi_channel = c.multi_channel;
  return import_pconv_file(data(c.file), options);
}

// pconv's raw output (normalised space) on the test image and mask, as inpaint-run computes it.
Tensor pconv_output(const ImportedModel& m) {
  PConvUNet net(m.config, PConvUNet::Uninitialized{});
  net.load_state_dict(m.state, true);
  net.eval();
  const ImageU8 img = read_image_u8(data("image.png"));
  const Tensor mask = mask_to_tensor(load_mask(data("mask.png")).mask);
  NoGradGuard no_grad;
  const Tensor x = mul(imagenet_normalize(image_to_tensor(img).reshape({1, 3, img.height, img.width})), mask);
  return net.forward(x, mask);
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.numel() == b.numel());
  const std::vector<float> x = a.to_float_vector(), y = b.to_float_vector();
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(double(x[i]) - double(y[i])));
  return worst;
}

double max_abs(const Tensor& a) {
  double m = 0;
  for (float v : a.to_float_vector()) m = std::max(m, double(std::abs(v)));
  return m;
}

std::string import_error(const std::string& path, const ImportOptions& options = {}) {
  try {
    import_pconv_file(path, options);
  } catch (const Error& e) {
    return e.what();
  }
  return "(imported)";
}

}  // namespace

TEST_CASE("torch checkpoint: the zip and legacy formats hold the same tensors (needs libzip)" * doctest::skip(!zip_supported())) {
  TorchCheckpoint zip(data("naoto_zip.pth")), legacy(data("naoto_legacy.pth"));
  CHECK(zip.format() == "zip (PyTorch >= 1.6)");
  CHECK(legacy.format() == "legacy (PyTorch < 1.6)");
  CHECK(zip.scalars().at("n_iter") == "1000000");
  CHECK(legacy.scalars().at("optimizer.param_groups.0.lr") == "0.00020000000000000001");
  CHECK(legacy.scalars().at("optimizer.param_groups.0.amsgrad") == "False");
  const TorchTensorInfo& w = zip.tensors().at("model.enc_1.conv.input_conv.weight");
  CHECK(w.storage_type == "FloatStorage");
  CHECK(w.shape == Shape{2, 3, 7, 7});
  int64_t compared = 0;
  for (const auto& entry : zip.tensors()) {
    const auto& [name, info] = entry;
    CAPTURE(entry.first);
    REQUIRE(legacy.tensors().count(name));
    const Tensor a = zip.load(name), b = legacy.load(name);
    REQUIRE(a.shape() == b.shape());
    REQUIRE(a.dtype() == b.dtype());
    CHECK(std::memcmp(a.raw_data(), b.raw_data(), size_t(a.numel()) * dtype_size(a.dtype())) == 0);
    ++compared;
  }
  CHECK(compared == 61);  // 10 layers: weights, mask kernels, dec_1's bias, 8 BatchNorms × 5
  // The legacy file also holds Adam's state (exp_avg, exp_avg_sq per trained parameter).
  int64_t adam = 0;
  for (const auto& [name, info] : legacy.tensors()) adam += name.rfind("optimizer.state.", 0) == 0;
  CHECK(adam >= 2 * 27);
  // num_batches_tracked is a 0-dimensional int64 tensor.
  const Tensor batches = zip.load("model.enc_2.bn.num_batches_tracked");
  CHECK(batches.dtype() == DType::I64);
  CHECK(batches.shape().empty());
  CHECK(batches.data<int64_t>()[0] == 6);  // the six batches that measured the statistics
}

namespace {

void check_reproduces_pytorch(Format format) {
  for (const Case& c : cases(format)) {
    CAPTURE(c.file);
    const ImportedModel m = import_case(c);
    CHECK(m.config == c.config);
    CHECK(m.metadata.at("import.layout") == c.layout);
    CHECK(m.metadata.at(PConvUNet::kConfigKey) == c.config.to_json());
    const Tensor got = pconv_output(m);
    const Tensor want = load_safetensors(data(std::string(c.expected) + "_expected.safetensors")).tensors.at("output");
    const double diff = max_abs_diff(got, want), scale = max_abs(want);
    MESSAGE(c.file << ": max |pconv - PyTorch| = " << diff << " on outputs up to " << scale);
    CHECK(scale > 1.5);  // the reference is not degenerate: it spans much of the 8-bit range
    CHECK(diff < 1e-4 * std::max(1.0, scale));
  }
}

}  // namespace

TEST_CASE("import: pconv reproduces PyTorch's output of each known layout, legacy files") {
  check_reproduces_pytorch(Format::Legacy);
}

TEST_CASE("import: pconv reproduces PyTorch's output of each known layout, zip files (needs libzip)" * kNeedsLibzip) {
  check_reproduces_pytorch(Format::Zip);
}

TEST_CASE("import: the comparison notices a small change in any mapped tensor") {
  // 1 % on one layer's weights, or 0.01 on a bias or a BatchNorm mean, must show: the test
  // above could fail if the mapping were off.
  const ImportedModel base = import_case(kCases[1]);
  const Tensor want = pconv_output(base);
  for (const std::string name : {"pconv1.weight", "pconv3.bn.running_mean", "pconv7.weight", "pconv10.bias"}) {
    CAPTURE(name);
    ImportedModel m = base;
    const Tensor& t = base.state.at(name);
    m.state[name] = name.find("weight") != std::string::npos ? mul(t, 1.01) : add(t, 0.01);
    CHECK(max_abs_diff(pconv_output(m), want) > 1e-4 * std::max(1.0, max_abs(want)));
  }
}

TEST_CASE("import: what the mapping says") {
  const ImportedModel m = import_case(kCases[1]);
  std::string report;
  for (const std::string& line : m.report) report += line + "\n";
  CAPTURE(report);
  CHECK(report.find("legacy (PyTorch < 1.6) checkpoint, state dict at 'model.'") != std::string::npos);
  CHECK(report.find("5 levels → 5-level width-2 PConvUNet") != std::string::npos);
  CHECK(report.find("enc_1 → pconv1: 3→2 7×7, weight ÷ 147, no bias (pconv1.bias = 0)") != std::string::npos);
  CHECK(report.find("dec_5 → pconv6: 32→16 3×3, weight ÷ 288, BatchNorm") != std::string::npos);
  CHECK(report.find("dec_1 → pconv10: 5→3 3×3, weight ÷ 45, bias") != std::string::npos);
  CHECK(report.find("not imported: 'optimizer'") != std::string::npos);
  CHECK(report.find("n_iter = 1000000") != std::string::npos);
  const ImportedModel early = import_case(kCases[2]);
  CHECK(early.report[3].find("enc_2 → pconv2: 2→4 5×5, weight ÷ 50, bias folded into the BatchNorm mean, BatchNorm") !=
        std::string::npos);
}

TEST_CASE("import: a build without libzip refuses zip checkpoints, saying why (needs a build without libzip)" *
          doctest::skip(zip_supported())) {
  for (const Case& c : cases(Format::Zip)) {
    CAPTURE(c.file);
    CHECK(import_error(data(c.file)).find("this pconv was built without libzip") != std::string::npos);
  }
}

TEST_CASE("import: layouts pconv cannot represent, or that are not PConv UNets, are refused (needs libzip)" *
          kNeedsLibzip) {
  std::string e = import_error(data("nvidia_zip.pth"));
  CHECK(e.find("multi_channel=True") != std::string::npos);
  CHECK(e.find("--nvidia-multi-channel") != std::string::npos);
  e = import_error(data("nvidia_single.pth"));
  CHECK(e.find("built without multi_channel (enc_1.conv.weight_maskUpdater is [1, 1, 7, 7])") != std::string::npos);
  e = import_error(data("bad_shape.pth"));
  CHECK(e.find("model.dec_3.conv.input_conv.weight is [5, 24, 3, 3]; layer pconv6 of a 4-level width-2 "
               "PConvUNet needs [4, 12, 3, 3]") != std::string::npos);
  e = import_error(data("unknown_layout.pth"));
  CHECK(e.find("no PConv UNet of a known layout") != std::string::npos);
  CHECK(e.find("generator.conv1.bias") != std::string::npos);
  ImportOptions wrong;
  wrong.layout = "nvidia";
  CHECK(import_error(data("naoto_zip.pth"), wrong).find("the nvidia layout's enc_1") != std::string::npos);
  wrong = {};
  wrong.prefix = "";
  CHECK(import_error(data("naoto_zip.pth"), wrong).find("under the top level") != std::string::npos);
}

TEST_CASE("import: PConv-Keras files are recognised and refused with what differs") {
  // A stand-in with PConv-Keras's layer and weight names (scripts/torch_pconv_reference.py).
  const std::string e = import_error(data("pconv_keras.h5"));
  CHECK(e.find("a PConv-Keras model (layers p_conv2d_*, outputs_img)") != std::string::npos);
  CHECK(e.find("1×1 convolution with a sigmoid") != std::string::npos);
  CHECK(e.find("images in [0,1]") != std::string::npos);
  CHECK(e.find("biases in holes") != std::string::npos);
}

namespace {

void check_evil_file_refused(const std::string& file) {
  const std::string marker = "/tmp/pconv-import-pickle-ran-code";
  fs::remove(marker);
  // The file really holds the call that would create the marker (torch.load would run it),
  // so the marker's absence below says something.
  CHECK(read_bytes(data(file)).find("touch " + marker) != std::string::npos);
  const std::string e = import_error(data(file));
  CHECK(e.find("global 'posix.system' is not allowed") != std::string::npos);
  CHECK(e.find("at byte ") != std::string::npos);
  CHECK(!fs::exists(marker));
}

}  // namespace

TEST_CASE("torch checkpoint: a pickle that would run code is refused, and nothing runs: legacy file") {
  check_evil_file_refused("evil_legacy.pth");
}

TEST_CASE("torch checkpoint: a pickle that would run code is refused, and nothing runs: zip file (needs libzip)" *
          kNeedsLibzip) {
  check_evil_file_refused("evil_zip.pth");
}

TEST_CASE("torch checkpoint: truncated and corrupt zip files give an error saying so (needs libzip)" * kNeedsLibzip) {
  const std::string dir = testing::scratch_dir("import-bad-zip");
  const std::string zip = read_bytes(data("naoto_zip.pth"));
  for (int i = 1; i < 10; ++i) {
    const size_t cut = zip.size() * size_t(i) / 10;
    CAPTURE(cut);
    write_bytes(dir + "/cut.pth", zip.substr(0, cut));
    CHECK(import_error(dir + "/cut.pth").find("truncated or corrupt") != std::string::npos);
  }
  // A flipped byte inside a stored tensor: the zip's CRC catches it.
  std::string flipped = zip;
  const size_t at = zip.find("naoto_zip/data/0") + 200;
  flipped[at] = char(flipped[at] ^ 0x55);
  write_bytes(dir + "/flipped.pth", flipped);
  CHECK(import_error(dir + "/flipped.pth").find("CRC error") != std::string::npos);
}

TEST_CASE("torch checkpoint: truncated, corrupt and foreign files give an error, never a crash") {
  const std::string dir = testing::scratch_dir("import-bad");
  const std::string legacy = read_bytes(data("naoto_legacy.pth"));
  // Every cut of the legacy file, at 40 places across it (pickles and storages).
  for (int i = 0; i < 40; ++i) {
    const size_t cut = legacy.size() * size_t(i) / 40;
    CAPTURE(cut);
    write_bytes(dir + "/cut.pth", legacy.substr(0, cut));
    // The reason, not just any error: every cut is found as a truncation (of a pickle or of a
    // storage), the first as an empty file.
    const std::string e = import_error(dir + "/cut.pth");
    CHECK(e.find(i == 0 ? "empty file" : "truncated") != std::string::npos);
  }

  // A legacy file whose object pickle uses an opcode a state dict never needs (INST).
  size_t end = 0;
  for (int i = 0; i < 3; ++i) end = pickle::parse(legacy, end, pickle::Policy{}).end;
  write_bytes(dir + "/inst.pth", legacy.substr(0, end) + "\x80\x02(X\x01\x00\x00\x00xios\nsystem\n."s);
  std::string e = import_error(dir + "/inst.pth");
  CHECK(e.find("opcode INST (0x69) is not supported") != std::string::npos);
  CHECK(e.find("at byte " + std::to_string(end + 9)) != std::string::npos);

  write_bytes(dir + "/empty.pth", "");
  CHECK(import_error(dir + "/empty.pth").find("empty file") != std::string::npos);
  CHECK(import_error(data("image.png")).find("neither a zip") != std::string::npos);
  write_bytes(dir + "/model.h5", std::string("\x89HDF\r\n\x1a\n", 8) + std::string(100, '\0'));
  CHECK(import_error(dir + "/model.h5").find("an HDF5 file (Keras .h5?) without PConv-Keras's layers") !=
        std::string::npos);
  CHECK(import_error(dir + "/missing.pth").find("No such file") != std::string::npos);
}

namespace {

// A legacy-format checkpoint made by hand: naoto_legacy.pth's three header pickles, an object
// pickle {'w': _rebuild_tensor_v2(storage 'k' of 4 floats 0..3, offset, size, stride)}, the key
// list and the storage.
std::string legacy_with_tensor(const std::string& offset, const std::string& size, const std::string& stride) {
  const std::string legacy = read_bytes(data("naoto_legacy.pth"));
  size_t end = 0;
  for (int i = 0; i < 3; ++i) end = pickle::parse(legacy, end, pickle::Policy{}).end;
  const std::string object = "\x80\x02}(X\x01\x00\x00\x00" "w" "ctorch._utils\n_rebuild_tensor_v2\n(" "(X\x07\x00\x00\x00"
                             "storage" "ctorch\nFloatStorage\n" "X\x01\x00\x00\x00" "k" "X\x03\x00\x00\x00" "cpu" "K\x04"
                             "tQ"s + offset + size + stride + "\x89" "ccollections\nOrderedDict\n)R" "tRu."s;
  const std::string keys = "\x80\x02]X\x01\x00\x00\x00" "ka."s;
  std::string storage = "\x04\x00\x00\x00\x00\x00\x00\x00"s;
  for (float v : {0.f, 1.f, 2.f, 3.f}) storage.append(reinterpret_cast<const char*>(&v), 4);
  return legacy.substr(0, end) + object + keys + storage;
}

}  // namespace

TEST_CASE("torch checkpoint: strided views are read element by element; views past their storage are refused") {
  const std::string dir = testing::scratch_dir("import-views");
  // Size (2, 2), stride (1, 2): the transpose of [[0, 1], [2, 3]].
  write_bytes(dir + "/t.pth", legacy_with_tensor("K\x00"s, "K\x02K\x02\x86"s, "K\x01K\x02\x86"s));
  {
    TorchCheckpoint file(dir + "/t.pth");
    const Tensor t = file.load("w");
    CHECK(t.shape() == Shape{2, 2});
    CHECK(t.to_float_vector() == std::vector<float>{0, 2, 1, 3});
  }
  write_bytes(dir + "/t.pth", legacy_with_tensor("K\x01"s, "K\x03\x85"s, "K\x01\x85"s));
  CHECK(TorchCheckpoint(dir + "/t.pth").load("w").to_float_vector() == std::vector<float>{1, 2, 3});
  // Past the end of the storage: 2×3 of 4 elements.
  write_bytes(dir + "/t.pth", legacy_with_tensor("K\x00"s, "K\x02K\x03\x86"s, "K\x03K\x01\x86"s));
  std::string e = import_error(dir + "/t.pth");
  CHECK(e.find("tensor 'w': shape [2, 3] reaches element 5 of storage k, which holds 4") != std::string::npos);
  // A stride-0 view as large as memory: refused before anything is allocated.
  write_bytes(dir + "/t.pth", legacy_with_tensor("K\x00"s, "\x8a\x05\x00\x00\x00\x00\x01\x85"s, "K\x00\x85"s));
  CHECK_THROWS_WITH_AS(TorchCheckpoint(dir + "/t.pth").load("w"), doctest::Contains("has 4294967296 elements"), Error);
}

namespace {

void check_import_and_run(Format format) {
  const std::string dir = testing::scratch_dir(format == Format::Zip ? "import-run-zip" : "import-run-legacy");
  for (const Case& c : cases(format)) {
    CAPTURE(c.file);
    const std::string model = dir + "/" + c.file + ".safetensors", out = dir + "/" + c.file + ".png";
    auto r = run_app("inpaint-import",
                     "--from " + quote(data(c.file)) + " --out " + quote(model) +
                         (c.multi_channel ? " --nvidia-multi-channel" : ""),
                     dir);
    CAPTURE(r.err);
    REQUIRE(r.status == 0);
    CHECK(r.out.find("wrote " + model) != std::string::npos);
    r = run_app("inpaint-run",
                "--model " + quote(model) + " --image " + quote(data("image.png")) + " --mask " +
                    quote(data("mask.png")) + " --out " + quote(out),
                dir);
    REQUIRE(r.status == 0);
    const ImageU8 got = read_image_u8(out), want = read_image_u8(data(std::string(c.expected) + "_expected.png"));
    REQUIRE(got.rgb.size() == want.rgb.size());
    int worst = 0, differing = 0;
    for (size_t i = 0; i < got.rgb.size(); ++i) {
      const int d = std::abs(int(got.rgb[i]) - int(want.rgb[i]));
      worst = std::max(worst, d);
      differing += d > 0;
    }
    MESSAGE(c.file << ": composite vs PyTorch: max " << worst << " level(s), " << differing << " of "
                   << got.rgb.size() << " values differ");
    CHECK(worst <= 1);
  }
}

}  // namespace

TEST_CASE("inpaint-import + inpaint-run: the composite equals PyTorch's within 1 level, legacy files") {
  check_import_and_run(Format::Legacy);
}

TEST_CASE("inpaint-import + inpaint-run: the composite equals PyTorch's within 1 level, zip files (needs libzip)" *
          kNeedsLibzip) {
  check_import_and_run(Format::Zip);
}

TEST_CASE("inpaint-import: bad input is one line, exit 2, and no output file (needs libzip)" * doctest::skip(!zip_supported())) {
  const std::string dir = testing::scratch_dir("import-app-bad");
  const std::string out = dir + "/out.safetensors";
  write_bytes(dir + "/truncated.pth", read_bytes(data("naoto_zip.pth")).substr(0, 5000));
  const std::pair<std::string, std::string> cases[] = {
      {quote(dir + "/truncated.pth"), "truncated or corrupt"},
      {quote(data("evil_zip.pth")), "global 'posix.system' is not allowed"},
      {quote(data("evil_legacy.pth")), "global 'posix.system' is not allowed"},
      {quote(data("bad_shape.pth")), "is [5, 24, 3, 3]"},
      {quote(data("unknown_layout.pth")), "no PConv UNet of a known layout"},
      {quote(data("nvidia_zip.pth")), "--nvidia-multi-channel"},
      {quote(data("pconv_keras.h5")), "a PConv-Keras model"},
      {quote(dir + "/missing.pth"), "No such file"},
  };
  for (const auto& entry : cases) {
    const auto& [from, needle] = entry;
    CAPTURE(entry.first);
    testing::check_one_line_error(run_app("inpaint-import", "--from " + from + " --out " + quote(out), dir), needle);
    CHECK(!fs::exists(out));
  }
  // Nothing but the captured streams is left in the folder (no temporary files).
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    CHECK((name == "truncated.pth" || name.rfind("app.std", 0) == 0));
  }
  // Outputs: never over an existing file without --force, never over the input, only .safetensors.
  write_bytes(out, "keep");
  testing::check_one_line_error(
      run_app("inpaint-import", "--from " + quote(data("naoto_zip.pth")) + " --out " + quote(out), dir),
      "exists (use --force to overwrite)");
  CHECK(read_bytes(out) == "keep");
  testing::check_one_line_error(
      run_app("inpaint-import", "--from " + quote(data("naoto_zip.pth")) + " --out " + quote(dir + "/x.pth"), dir),
      "must be a .safetensors file");
  auto r = run_app("inpaint-import", "--from " + quote(data("naoto_zip.pth")) + " --out " + quote(out) + " --force", dir);
  CHECK(r.status == 0);
  CHECK(load_safetensors(out).metadata.at("import.layout") == "naoto");
}
