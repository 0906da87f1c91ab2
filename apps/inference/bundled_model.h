#pragma once
// The pretrained model that ships with pconv (data/model/, see its MODEL_CARD.md): found next to
// the binary (build folders inside the source tree, or an install prefix's share/pconv/), or in
// the source tree the binary was built from.
#include <string>

namespace pconv::bundled {

// The bundled model's file name.
constexpr const char* kFileName = "pconv-photos.safetensors";

// The first existing file among: $PCONV_MODEL; <exe>/../data/model/, <exe>/../share/pconv/,
// <source tree>/data/model/ (kFileName). Empty when there is none.
std::string find_model();

// `given` when not empty; otherwise the bundled model, announced on stderr by `tool` ("tool:
// no --model given, using the bundled model <path>"). Throws Error (one line) when there is none.
std::string resolve_model(const std::string& given, const std::string& tool);

}  // namespace pconv::bundled
