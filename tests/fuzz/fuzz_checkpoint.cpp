// libFuzzer target: checkpoint → model construction (inference::load_model: safetensors,
// pconv.config with its bounds, shapes checked against the file before anything is built,
// strict loading), plus the parsers the training loop runs over checkpoint metadata. A model
// that loads and is small runs one forward pass.
#include "apps/inference/inference.h"
#include "core/data/dataset.h"
#include "core/ops.h"
#include "tests/fuzz/fuzz_util.h"

using namespace pconv;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemoryFile input;
  const std::string& path = input.write(data, size);
  try {
    // Metadata parsers, on whatever the file's metadata holds.
    for (const auto& [key, value] : load_safetensors(path).metadata) {
      try {
        if (key == PConvUNet::kConfigKey) PConvUNetConfig::from_json(value).state_shapes();
        if (key == "train.data_state") DatasetState::parse(value);
      } catch (const Error&) {
      }
    }
    std::unique_ptr<PConvUNet> net = inference::load_model(path);
    const PConvUNetConfig& c = net->config();
    if (c.levels <= 4 && c.width <= 16) {
      NoGradGuard no_grad;
      const int64_t side = int64_t(1) << c.levels;
      Tensor image = Tensor::zeros({1, 3, side, side}), mask = Tensor::ones({1, 1, side, side});
      net->forward(image, mask);
    }
  } catch (const Error&) {
  }
  return 0;
}
