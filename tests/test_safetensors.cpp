#include <doctest/doctest.h>

#include <signal.h>
#include <sys/resource.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/io/safetensors.h"
#include "tests/test_util.h"

using namespace pconv;
namespace fs = std::filesystem;

namespace {

using testing::read_bytes;
using testing::write_bytes;

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return s;
}

// A file built by hand: declared header length (default: the true one), JSON, data.
std::string file_bytes(const std::string& json, const std::string& data, int64_t declared = -1) {
  return le64(declared < 0 ? json.size() : uint64_t(declared)) + json + data;
}

std::string bytes_of(const Tensor& t) {
  return std::string(static_cast<const char*>(t.raw_data()), t.nbytes());
}

// Random bytes of every dtype (raw bit patterns: a round trip must keep them all).
Tensor random_tensor(const Shape& shape, DType dtype, uint64_t seed) {
  Tensor t = Tensor::empty(shape, dtype);
  auto* p = static_cast<unsigned char*>(t.raw_data());
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < t.nbytes(); ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    p[i] = static_cast<unsigned char>(x >> 24);
  }
  return t;
}

// Loading `bytes` must fail with "<path>: ..." containing `fragment`.
void expect_load_error(const std::string& dir, const std::string& name, const std::string& bytes,
                       const std::string& fragment) {
  const std::string path = dir + "/" + name + ".safetensors";
  write_bytes(path, bytes);
  try {
    load_safetensors(path);
    FAIL_CHECK(name << ": loaded without error");
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO(name << ": " << msg);
    CHECK(msg.rfind(path + ": ", 0) == 0);
    CHECK(msg.find(fragment) != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
    CHECK(msg.size() < path.size() + 300);  // quoted values are cut short
  }
}

size_t files_in(const std::string& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

}  // namespace

TEST_CASE("safetensors: every dtype and the metadata round-trip bit for bit") {
  const std::string dir = testing::scratch_dir("safetensors_roundtrip");
  std::map<std::string, Tensor> tensors = {
      {"w.f32", random_tensor({3, 4, 5}, DType::F32, 1)},
      {"w.f64", random_tensor({7}, DType::F64, 2)},
      {"a.bf16", random_tensor({2, 3}, DType::BF16, 3)},
      {"b.f16", random_tensor({5, 1, 1}, DType::F16, 4)},
      {"optim.step", random_tensor({}, DType::I64, 5)},
      {"empty", Tensor::empty({0, 3}, DType::F32)},
      {"z.odd", random_tensor({3}, DType::F16, 6)},  // 6 bytes: later offsets are unaligned
  };
  const std::map<std::string, std::string> meta = {{"phase", "2"}, {"config", "{\"size\": 256}"},
                                                   {"unicode", "µ – ✓"}};
  const std::string path = dir + "/all.safetensors";
  save_safetensors(path, tensors, meta);
  SafetensorsFile f = load_safetensors(path);
  CHECK(f.metadata == meta);
  REQUIRE(f.tensors.size() == tensors.size());
  for (const auto& [name, t] : tensors) {
    const std::string tensor = name;
    INFO(tensor);
    REQUIRE(f.tensors.count(name) == 1);
    const Tensor& u = f.tensors.at(name);
    CHECK(u.dtype() == t.dtype());
    CHECK(u.shape() == t.shape());
    CHECK(u.device() == Device::CPU);
    CHECK(bytes_of(u) == bytes_of(t));
  }

  // Layout: header length a multiple of 8, padded with spaces, data in sorted-name order.
  const std::string raw = read_bytes(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(raw[size_t(i)]);
  CHECK(n % 8 == 0);
  std::string header = raw.substr(8, n);
  CHECK(header.front() == '{');
  CHECK(header.find_last_not_of(' ') == header.find_last_of('}'));
  std::string data;
  for (const auto& [name, t] : tensors) data += bytes_of(t);  // std::map: sorted
  CHECK(raw.substr(8 + n) == data);
  CHECK(header.find("\"dtype\":\"BF16\"") != std::string::npos);
  CHECK(header.find("\"shape\":[]") != std::string::npos);

  // No metadata: no __metadata__ entry at all, and an empty file is valid.
  save_safetensors(path, {});
  f = load_safetensors(path);
  CHECK(f.tensors.empty());
  CHECK(f.metadata.empty());
  CHECK(read_bytes(path).find("__metadata__") == std::string::npos);
}

TEST_CASE("safetensors: reads a file laid out by hand as the reference library writes it") {
  const std::string dir = testing::scratch_dir("safetensors_hand");
  const float a[2] = {1.5f, -2.0f};
  const int64_t b[1] = {123456789012345};
  std::string data(reinterpret_cast<const char*>(b), 8);
  data.append(reinterpret_cast<const char*>(a), 8);
  std::string json =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},)"
      R"("a":{"dtype":"F32","shape":[2,1],"data_offsets":[8,16]}})";
  json.append(7, ' ');
  write_bytes(dir + "/hand.safetensors", file_bytes(json, data));
  SafetensorsFile f = load_safetensors(dir + "/hand.safetensors");
  CHECK(f.metadata.at("format") == "pt");
  CHECK(f.tensors.at("a").shape() == Shape{2, 1});
  CHECK(f.tensors.at("a").at({1, 0}) == -2.0);
  CHECK(f.tensors.at("b").data<int64_t>()[0] == 123456789012345);
}

TEST_CASE("safetensors: malformed files fail with a one-line reason naming the path") {
  const std::string dir = testing::scratch_dir("safetensors_bad");
  const std::string ok = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string eight(8, '\x01');

  CHECK_THROWS_WITH_AS(load_safetensors(dir + "/absent.safetensors"),
                       (dir + "/absent.safetensors: no such file").c_str(), Error);
  CHECK_THROWS_WITH_AS(load_safetensors(dir), (dir + ": not a regular file").c_str(), Error);
  expect_load_error(dir, "empty", "", "truncated: 0 bytes");
  expect_load_error(dir, "short_length", std::string(5, '\0'), "truncated: 5 bytes");
  expect_load_error(dir, "truncated_header", file_bytes(ok, eight).substr(0, 30),
                    "truncated: header length");
  expect_load_error(dir, "huge_header", file_bytes(ok, eight, int64_t(1) << 40), "100 MB limit");
  expect_load_error(dir, "bad_json", file_bytes(R"({"x": {"dtype": "F32",)", ""),
                    "header is not valid JSON");
  expect_load_error(dir, "not_object", file_bytes("[1, 2]", ""), "header is not a JSON object");
  expect_load_error(dir, "entry_not_object", file_bytes(R"({"x": 3})", ""),
                    "tensor 'x' is not a JSON object");
  expect_load_error(dir, "no_offsets", file_bytes(R"({"x":{"dtype":"F32","shape":[0]}})", ""),
                    "tensor 'x' has no \"data_offsets\"");
  expect_load_error(dir, "unknown_dtype",
                    file_bytes(R"({"x":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})", eight),
                    "unsupported dtype 'Q7'");
  expect_load_error(dir, "negative_dim",
                    file_bytes(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight),
                    "dimensions must be non-negative integers");
  expect_load_error(dir, "float_dim",
                    file_bytes(R"({"x":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", eight),
                    "dimensions must be non-negative integers");
  expect_load_error(dir, "bad_offsets",
                    file_bytes(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", eight),
                    "expected [begin, end]");
  expect_load_error(dir, "begin_after_end",
                    file_bytes(R"({"x":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", eight),
                    "begin after end");
  expect_load_error(dir, "offsets_past_end",
                    file_bytes(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", eight),
                    "data_offsets [0, 16] past the end of the data (8 bytes");
  expect_load_error(dir, "truncated_data", file_bytes(ok, eight).substr(0, 8 + ok.size() + 5),
                    "past the end of the data (5 bytes");
  expect_load_error(dir, "size_mismatch",
                    file_bytes(R"({"x":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}})", eight),
                    "has shape [2] F64 (16 bytes) but data_offsets [0, 8] span 8 bytes");
  expect_load_error(dir, "overflowing_shape",
                    file_bytes(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", eight),
                    "overflows");
  expect_load_error(dir, "overlap",
                    file_bytes(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                               eight),
                    "tensors 'x' and 'y' overlap");
  expect_load_error(dir, "gap",
                    file_bytes(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight),
                    "data bytes 0 to 4 belong to no tensor");
  expect_load_error(dir, "trailing", file_bytes(ok, eight + "xx"), "the tensors cover 8");
  expect_load_error(dir, "bad_metadata",
                    file_bytes(R"({"__metadata__":{"step":12}})", ""),
                    "__metadata__ value of 'step' is not a string");
  expect_load_error(dir, "metadata_not_object", file_bytes(R"({"__metadata__":[]})", ""),
                    "__metadata__ is not a JSON object");
  // Hostile headers: nesting far deeper than the format's three levels is refused before
  // parsing (brackets inside strings do not count), and quoted values are cut short.
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  expect_load_error(dir, "deep", file_bytes(deep, ""), "header nests deeper than a safetensors header does (3 levels)");
  expect_load_error(dir, "deep_shape",
                    file_bytes(R"({"x":{"dtype":"F32","shape":[[2]],"data_offsets":[0,8]}})", eight),
                    "header nests deeper");
  expect_load_error(dir, "brackets_in_strings",
                    file_bytes(R"({"[[[[x\"{{{{":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", eight + "xx"),
                    "the tensors cover 8");
  expect_load_error(dir, "huge_number", file_bytes(R"({"x":{"dtype":"F32","shape":[1e999],"data_offsets":[0,8]}})", eight),
                    "header is not valid JSON ([json.exception.out_of_range.406] number overflow");
  expect_load_error(dir, "long_number",
                    file_bytes(R"({"x":{"dtype":"F32","shape":[)" + std::string(5000, '9') + "]}}", eight),
                    "header is not valid JSON (");
  const std::string long_value = "[\"" + std::string(5000, 'a') + "\"]";
  expect_load_error(dir, "long_value",
                    file_bytes(R"({"x":{"dtype":"F32","shape":)" + long_value + R"(,"data_offsets":[0,8]}})", eight),
                    "...: dimensions must be non-negative integers");
  const std::string long_name(100000, 'n');
  const std::string long_name_file = file_bytes(R"({")" + long_name + R"(":3})", "");
  write_bytes(dir + "/long_name.safetensors", long_name_file);
  try {
    load_safetensors(dir + "/long_name.safetensors");
    FAIL_CHECK("loaded");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).size() < 300);
  }
}

TEST_CASE("safetensors: a failed write throws and leaves the previous file intact") {
  const std::string dir = testing::scratch_dir("safetensors_atomic");
  const std::string path = dir + "/ckpt.safetensors";
  const std::map<std::string, Tensor> before = {{"w", random_tensor({16}, DType::F32, 9)}};
  save_safetensors(path, before, {{"step", "1"}});
  const std::string original = read_bytes(path);

  // The target is a folder: rename fails, the folder and its contents survive.
  fs::create_directories(dir + "/is_a_dir/inner");
  CHECK_THROWS_AS(save_safetensors(dir + "/is_a_dir", before), Error);
  CHECK(fs::is_directory(dir + "/is_a_dir/inner"));

  // The folder does not exist.
  try {
    save_safetensors(dir + "/missing/ckpt.safetensors", before);
    FAIL_CHECK("wrote into a missing folder");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).rfind(dir + "/missing/ckpt.safetensors: cannot write (", 0) == 0);
  }

  // A full disk, simulated with a file-size limit: write() fails part way (EFBIG).
  const std::map<std::string, Tensor> big = {{"w", random_tensor({1 << 16}, DType::F32, 10)}};
  struct rlimit old {};
  REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 4096;
  REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
  bool threw = false;
  std::string message;
  try {
    save_safetensors(path, big, {{"step", "2"}});
  } catch (const Error& e) {
    threw = true;
    message = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  CHECK(threw);
  CHECK(message.rfind(path + ": cannot write (", 0) == 0);
  CHECK(read_bytes(path) == original);
  CHECK(load_safetensors(path).metadata.at("step") == "1");
  CHECK(files_in(dir) == 2);  // ckpt.safetensors and is_a_dir: no temp file left behind

  // A successful write replaces the file and leaves no temp file either.
  save_safetensors(path, big, {{"step", "2"}});
  CHECK(load_safetensors(path).metadata.at("step") == "2");
  CHECK(bytes_of(load_safetensors(path).tensors.at("w")) == bytes_of(big.at("w")));
  CHECK(files_in(dir) == 2);
}

TEST_CASE("safetensors: write_file_atomic replaces any bytes; bad names are refused") {
  const std::string dir = testing::scratch_dir("safetensors_write_file");
  const std::string path = dir + "/log.json";
  write_file_atomic(path, "first");
  std::string binary("a\0b\xff", 4);
  write_file_atomic(path, binary);
  CHECK(read_bytes(path) == binary);
  write_file_atomic(path, "");
  CHECK(read_bytes(path).empty());
  CHECK(files_in(dir) == 1);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"__metadata__", Tensor::zeros({1})}}),
                       (path + ": invalid tensor name '__metadata__'").c_str(), Error);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"u", Tensor{}}}),
                       (path + ": tensor 'u' is undefined").c_str(), Error);
}

TEST_CASE("safetensors: GPU tensors are saved from a CPU copy" * doctest::test_suite("gpu")) {
  const std::string dir = testing::scratch_dir("safetensors_gpu");
  Tensor host = random_tensor({4, 5}, DType::F32, 11);
  save_safetensors(dir + "/gpu.safetensors", {{"g", host.to(Device::CUDA)}});
  Tensor back = load_safetensors(dir + "/gpu.safetensors").tensors.at("g");
  CHECK(back.device() == Device::CPU);
  CHECK(bytes_of(back) == bytes_of(host));
}
