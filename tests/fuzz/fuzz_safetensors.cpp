// libFuzzer target: the safetensors reader (core/io/safetensors.cpp) on arbitrary bytes. A file
// that loads is written back (to a scratch folder: the writer renames a temporary file) and,
// unless the writer refuses it (an empty tensor name), must load again to the same tensors
// and metadata.
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "core/io/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

using namespace pconv;

namespace {

namespace fs = std::filesystem;

// A scratch folder in memory where there is one, removed when the process ends.
struct ScratchFolder {
  fs::path dir = (fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path()) /
                 ("pconv-fuzz-" + std::to_string(::getpid()));
  ScratchFolder() { fs::create_directories(dir); }
  ~ScratchFolder() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemoryFile input;
  static const ScratchFolder scratch;
  static const std::string path = (scratch.dir / "roundtrip.safetensors").string();
  SafetensorsFile file;
  try {
    file = load_safetensors(input.write(data, size));
  } catch (const Error&) {
    return 0;  // refused with a message: expected
  }
  // Round trip: what pconv read, it writes as a file it reads back identically.
  try {
    save_safetensors(path, file.tensors, file.metadata);
  } catch (const Error&) {
    return 0;
  }
  const SafetensorsFile again = load_safetensors(path);
  if (again.metadata != file.metadata || again.tensors.size() != file.tensors.size()) std::abort();
  for (const auto& [name, t] : file.tensors) {
    const Tensor& u = again.tensors.at(name);
    if (u.shape() != t.shape() || u.dtype() != t.dtype() ||
        (t.nbytes() > 0 && std::memcmp(u.raw_data(), t.raw_data(), t.nbytes()) != 0))
      std::abort();
  }
  return 0;
}
