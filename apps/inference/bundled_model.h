#pragma once
// The pretrained model that ships with pconv (data/model/, see its MODEL_CARD.md), found
// relative to the running binary: an install prefix keeps it in share/pconv/ beside bin/, and a
// build folder inside the source tree has data/model/ beside it. Never through a path compiled
// into the binary: a relocated install would silently use the source tree it was built from,
// or find nothing only once that tree is gone.
#include <string>

namespace pconv::bundled {

// The bundled model's file name.
constexpr const char* kFileName = "pconv-photos.safetensors";

// The folder of the running binary (from /proc/self/exe); empty when it cannot be read.
std::string executable_dir();

// The first existing file among: `env` (the value of $PCONV_MODEL) when not empty;
// <exe_dir>/../share/pconv/kFileName (installed); <exe_dir>/../data/model/kFileName (a build
// folder in the source tree). Canonical; empty when there is none.
std::string find_model_from(const std::string& exe_dir, const std::string& env);
// find_model_from(executable_dir(), $PCONV_MODEL).
std::string find_model();

// `given` when not empty; otherwise the bundled model, announced on stderr by `tool` ("tool:
// no --model given, using the bundled model <path>"). Throws Error (one line) when there is none.
std::string resolve_model(const std::string& given, const std::string& tool);

}  // namespace pconv::bundled
