#pragma once
// The pretrained model that ships with pconv, in models/bundled/ of the source tree. The apps
// find it through this one function instead of spelling the path each.
#include <string>

namespace pconv {

// models/bundled/*.safetensors (the first by name) of the source tree this binary was built
// from, or of the folder above the binary's; empty when there is none.
std::string bundled_model_path();

// `model_option` when given, else the bundled model; throws a one-line Error saying both are
// missing ("no --model given and no bundled model in ...").
std::string model_or_bundled(const std::string& model_option);

}  // namespace pconv
