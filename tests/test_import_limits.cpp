// Import bombs: files whose headers claim more than they hold, or whose few
// bytes build gigabytes, are refused in one line before the memory is allocated
// (core/io/zip_archive.h, core/io/pickle.h, core/io/torch_checkpoint.h's TorchReadLimits, and the memory
// budget of core/available_memory.h).
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>

#include "core/dtype.h"
#include "core/io/pickle.h"
#include "core/io/torch_checkpoint.h"
#include "core/io/zip_archive.h"
#include "tests/test_util.h"
#include "tests/zip_writer.h"

using namespace pconv;
using namespace std::string_literals;
using testing::quote;
using testing::run_app;
using testing::write_bytes;

namespace {

// {'w': _rebuild_tensor_v2(storage('k', FloatStorage, numel), offset, size, stride)}, the object
// pickle of both formats; `pid_tail` ends the persistent id tuple after the location (its numel
// and, for a legacy view, the view tuple).
std::string object_pickle(const std::string& pid_tail, const std::string& offset, const std::string& size,
                          const std::string& stride) {
  return "\x80\x02}(X\x01\x00\x00\x00" "w" "ctorch._utils\n_rebuild_tensor_v2\n(" "(X\x07\x00\x00\x00"
         "storage" "ctorch\nFloatStorage\n" "X\x01\x00\x00\x00" "k" "X\x03\x00\x00\x00" "cpu"s + pid_tail +
         "tQ"s + offset + size + stride + "\x89" "ccollections\nOrderedDict\n)R" "tRu."s;
}
const std::string kFourFloats = object_pickle("K\x04"s, "K\x00"s, "K\x04\x85"s, "K\x01\x85"s);

std::string floats_0123() {
  std::string s;
  for (float v : {0.f, 1.f, 2.f, 3.f}) s.append(reinterpret_cast<const char*>(&v), 4);
  return s;
}

// A legacy-format file: the three header pickles of torch.save (magic number, protocol 1001,
// system info), the object pickle, the key list ['k'] and storage k of 4 floats.
std::string legacy_file(const std::string& object) {
  const std::string magic = "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."s;
  const std::string protocol = "\x80\x02M\xe9\x03."s;
  const std::string sys_info = "\x80\x02}(X\x0d\x00\x00\x00little_endian\x88u."s;
  return magic + protocol + sys_info + object + "\x80\x02]X\x01\x00\x00\x00ka."s +
         "\x04\x00\x00\x00\x00\x00\x00\x00"s + floats_0123();
}

std::string checkpoint_error(const std::string& path, const TorchReadLimits& limits = {}) {
  try {
    TorchCheckpoint file(path, limits);
    for (const auto& entry : file.tensors()) file.load(entry.first);
  } catch (const Error& e) {
    return e.what();
  }
  return "(read)";
}

// Points the memory budget at a fake cgroup tree for the scope (the real machine's MemAvailable
// still counts, and is larger).
struct FakeCgroup {
  explicit FakeCgroup(const std::string& dir, int64_t max_bytes) {
    write_bytes(dir + "/memory.max", std::to_string(max_bytes) + "\n");
    write_bytes(dir + "/memory.current", "0\n");
    setenv("PCONV_CGROUP_ROOT", dir.c_str(), 1);
  }
  ~FakeCgroup() { unsetenv("PCONV_CGROUP_ROOT"); }
};

// Zip cases need libzip; a build without it (a bare GPU machine) reports them as skipped
// (doctest's skip count) rather than passing them empty.
const auto kNeedsLibzip = doctest::skip(!zip_supported());

}  // namespace

TEST_CASE("import limits: a zip checkpoint that reads back as written (needs libzip)" * kNeedsLibzip) {
  const std::string dir = testing::scratch_dir("limits-honest");
  write_bytes(dir + "/ok.pth", testing::zip_archive_bytes({testing::stored_entry("a/data.pkl", kFourFloats),
                                                            testing::stored_entry("a/data/k", floats_0123())}));
  TorchCheckpoint file(dir + "/ok.pth");
  CHECK(file.load("w").to_float_vector() == std::vector<float>{0, 1, 2, 3});
}

TEST_CASE("import limits: a 140-byte .pth declaring 4 GB is refused before anything is allocated (needs libzip)" * kNeedsLibzip) {
  const std::string dir = testing::scratch_dir("limits-4gb");
  // A 22-byte data.pkl whose headers say 4,000,000,000 bytes: stored, and deflated.
  testing::ZipEntry entry = testing::stored_entry("a/data.pkl", kFourFloats.substr(0, 22));
  entry.size = 4'000'000'000u;
  const std::string stored = testing::zip_archive_bytes({entry});
  CHECK(stored.size() == 140);
  write_bytes(dir + "/stored.pth", stored);
  CHECK(checkpoint_error(dir + "/stored.pth").find("stored uncompressed in 22 bytes but claims 4000000000") !=
        std::string::npos);
  entry.method = 8;
  write_bytes(dir + "/deflated.pth", testing::zip_archive_bytes({entry}));
  CHECK(checkpoint_error(dir + "/deflated.pth")
            .find("claims 4000000000 bytes from 22 deflated ones, more than deflate can expand") != std::string::npos);
  // The app: one line, exit 2, nothing written.
  for (const char* name : {"stored.pth", "deflated.pth"}) {
    CAPTURE(name);
    testing::check_one_line_error(
        run_app("inpaint-import", "--from " + quote(dir + "/" + name) + " --out " + quote(dir + "/o.safetensors"), dir),
        "a/data.pkl");
    CHECK(!std::filesystem::exists(dir + "/o.safetensors"));
  }
}

TEST_CASE("import limits: zip bombs are refused by the pickle cap, by the memory budget, and past their declared size (needs libzip)" * kNeedsLibzip) {
  const std::string dir = testing::scratch_dir("limits-bomb");
  // 65 MiB of zeros deflated to about 64 KB, declared honestly: over the pickle's 64 MiB.
  const testing::ZipEntry bomb = testing::deflated_zeros("a/data.pkl", (uint64_t(65) << 20));
  CHECK(bomb.data.size() < 100'000);
  write_bytes(dir + "/bomb.pth", testing::zip_archive_bytes({bomb}));
  CHECK(checkpoint_error(dir + "/bomb.pth").find("zip entry a/data.pkl is 65 MiB, over the 64 MiB allowed for it") !=
        std::string::npos);
  // Allowed by the caller's limit, refused by a memory budget of 32 MiB (a cgroup's memory.max).
  TorchReadLimits generous;
  generous.max_pickle_bytes = int64_t(1) << 30;
  {
    FakeCgroup cgroup(dir, int64_t(32) << 20);
    CHECK(checkpoint_error(dir + "/bomb.pth", generous).find("and this process has 32 MiB of memory available") !=
          std::string::npos);
  }
  // Declared as 1000 bytes, inflating to 65 MiB: the read stops after the declared size.
  testing::ZipEntry liar = bomb;
  liar.size = 1000;
  write_bytes(dir + "/liar.pth", testing::zip_archive_bytes({liar}));
  const std::string e = checkpoint_error(dir + "/liar.pth");
  CHECK(e.find("zip entry a/data.pkl is truncated or corrupt") != std::string::npos);
  // Compression methods PyTorch does not write (here 12, bzip2) are refused by number.
  testing::ZipEntry bzip = testing::stored_entry("a/data.pkl", kFourFloats);
  bzip.method = 12;
  write_bytes(dir + "/bzip.pth", testing::zip_archive_bytes({bzip}));
  CHECK(checkpoint_error(dir + "/bzip.pth").find("compression method 12") != std::string::npos);
}

TEST_CASE("import limits: a pickle's values are capped in bytes, not only in number") {
  // A list of 100,000 Nones: 100 KB of opcodes, about 16 MB of values.
  const std::string nones = "\x80\x02](" + std::string(100'000, 'N') + "e.";
  pickle::Policy policy;
  policy.max_bytes = size_t(1) << 20;
  CHECK_THROWS_WITH_AS(pickle::parse(nones, 0, policy), doctest::Contains("more than 1 MiB of memory"), Error);
  policy.max_bytes = size_t(64) << 20;
  CHECK(pickle::parse(nones, 0, policy).root->items.size() == 100'000);
  CHECK(pickle::Policy{}.max_bytes <= (size_t(256) << 20));

  // The same through a checkpoint's limit, and a 100 KB string named 1,000 times through the
  // memo: the parse holds it once, the flattened scalars would copy it 1,000 times (100 MB).
  const std::string dir = testing::scratch_dir("limits-pickle");
  TorchReadLimits small;
  small.max_pickle_bytes = int64_t(1) << 20;
  write_bytes(dir + "/nones.pth", legacy_file("\x80\x02}(X\x01\x00\x00\x00n]("s + std::string(100'000, 'N') + "eu."));
  CHECK(checkpoint_error(dir + "/nones.pth", small).find("more than 1 MiB of memory") != std::string::npos);
  std::string shared = "\x80\x02}(X\x01\x00\x00\x00s](X\xa0\x86\x01\x00"s + std::string(100'000, 'x') + "q\x00"s;
  for (int i = 0; i < 999; ++i) shared += "h\x00"s;
  write_bytes(dir + "/shared.pth", legacy_file(shared + "eu."));
  CHECK(checkpoint_error(dir + "/shared.pth", small).find("names and values take more than 1 MiB") != std::string::npos);
}

TEST_CASE("import limits: a storage offset that would overflow is refused before the sum") {
  const std::string dir = testing::scratch_dir("limits-offset");
  // A legacy view (storage k's elements [1, 3)) with an offset of 2^63 − 1 on top.
  const std::string view = "K\x04(X\x01\x00\x00\x00kK\x01K\x02t"s;
  const std::string max_offset = "\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f"s;
  write_bytes(dir + "/o.pth", legacy_file(object_pickle(view, max_offset, "K\x01\x85"s, "K\x01\x85"s)));
  CHECK(checkpoint_error(dir + "/o.pth").find("storage offset 9223372036854775807 outside storage k of 4 elements") !=
        std::string::npos);
  // The same view with offset 1 reads element 2.
  write_bytes(dir + "/o.pth", legacy_file(object_pickle(view, "K\x01"s, "K\x01\x85"s, "K\x01\x85"s)));
  CHECK(TorchCheckpoint(dir + "/o.pth").load("w").to_float_vector() == std::vector<float>{2});
}
