// libFuzzer target: a PyTorch checkpoint → PConvUNet, the whole import path: format detection,
// the zip or legacy container, the pickles with the allow-list, tensors and their storages
// (read with TorchReadLimits of 16 MiB), the layout recognition and mapping of
// models/pconv_import.h, and loading the mapped weights into a PConvUNet (non-finite weights
// refused there).
#include "core/dtype.h"
#include "core/io/torch_checkpoint.h"
#include "models/pconv_import.h"
#include "tests/fuzz/fuzz_util.h"

using namespace pconv;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemoryFile input;
  const std::string& path = input.write(data, size);
  try {
    TorchReadLimits limits;
    limits.max_pickle_bytes = int64_t(16) << 20;
    limits.max_storage_bytes = int64_t(16) << 20;
    const TorchCheckpoint file(path, limits);
    (void)file.scalars();
    for (const auto& entry : file.tensors()) {
      try {
        (void)file.load(entry.first);
      } catch (const Error&) {
      }
    }
    for (bool multi_channel : {false, true}) {
      ImportOptions options;
      options.nvidia_multi_channel = multi_channel;
      try {
        const ImportedModel model = import_pconv(file, options);
        PConvUNet net(model.config, PConvUNet::Uninitialized{});
        net.load_state_dict(model.state, true);
      } catch (const Error&) {
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
