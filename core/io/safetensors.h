#pragma once
// safetensors files (https://github.com/huggingface/safetensors): 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}},
// then raw little-endian data. Reading checks every bound; writing is atomic.
#include <map>
#include <string>

#include "core/tensor.h"

namespace pconv {

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;           // CPU tensors (F32, F64, BF16, F16, I64)
  std::map<std::string, std::string> metadata;     // "__metadata__"
};

// Throws Error("<path>: <reason>") for a missing, truncated or malformed file: header length
// past the file or over 100 MB, bad JSON, unknown dtype, shape/dtype/size disagreeing with
// the offsets, offsets past the end, overlapping or not covering the data.
SafetensorsFile load_safetensors(const std::string& path);

// Writes to "<path>.tmp-<pid>" in the same folder, fsyncs, renames over `path`, fsyncs the
// folder: a crash or full disk leaves the previous file intact. GPU tensors are copied to
// the CPU first. Throws Error naming the path and the system's reason.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Atomic write of any bytes (temp file, fsync, rename); used for images, logs and JSON too.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace pconv
