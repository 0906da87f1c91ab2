#pragma once
// PyTorch checkpoints (what torch.save writes: .pth, .pt, .ckpt) read without Python, in both
// of torch.save's formats:
//   zip    (PyTorch >= 1.6): <name>/data.pkl, the object pickle, whose tensors point at
//          storages stored as the entries <name>/data/<key> (raw little-endian elements);
//   legacy (PyTorch < 1.6, or _use_new_zipfile_serialization=False): five pickles in a row
//          (magic number, protocol 1001, system info, the object, the sorted storage keys),
//          then each storage as an 8-byte element count and its raw elements.
// The pickles go through core/io/pickle.h with an allow-list of what a state dict needs
// (collections.OrderedDict, torch._utils._rebuild_tensor{,_v2}, _rebuild_parameter, torch's
// storage types); nothing in the file is ever executed.
//
// The object is flattened: every tensor and scalar reachable through dicts, lists and tuples
// is listed by its dotted path ("model.enc_1.conv.input_conv.weight", "n_iter"). Tensor data
// is read only when asked for, so a checkpoint's optimiser state costs nothing.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace pconv {

struct TorchTensorInfo {
  std::string storage_type;  // "FloatStorage", "HalfStorage", ... ("torch." and "cuda." dropped)
  std::string location;      // where it was saved from: "cpu", "cuda:0" (read on the CPU anyway)
  std::string storage_key;
  int64_t storage_offset = 0;  // in elements
  Shape shape;
  std::vector<int64_t> strides;
};

// What reading a checkpoint may cost, whatever its header claims. Past these, and past the
// memory budget (core/available_memory.h), a file is refused before the memory is allocated.
struct TorchReadLimits {
  // The object pickle (zip: the data.pkl entry) and the values parsed from it, each: a state
  // dict's pickle takes kilobytes, a large training checkpoint's a few megabytes.
  int64_t max_pickle_bytes = int64_t(64) << 20;
  // One storage read from a zip archive; -1: only the memory budget. (A legacy file's storages
  // are read from the mapped file, so its size bounds them.)
  int64_t max_storage_bytes = -1;
};

class TorchCheckpoint {
 public:
  // Throws Error("<path>: <reason>") for a missing or unreadable file, a file in neither
  // format (e.g. the pre-2017 tar format, a Keras .h5), a truncated or corrupt zip or pickle,
  // a pickle with anything outside the allow-list (naming the opcode or global and its byte
  // offset), a big-endian file, tensors that point outside their storages, or sizes past the
  // limits (zip bombs, pickles that build gigabytes of values).
  explicit TorchCheckpoint(const std::string& path, const TorchReadLimits& limits = {});
  ~TorchCheckpoint();
  TorchCheckpoint(const TorchCheckpoint&) = delete;
  TorchCheckpoint& operator=(const TorchCheckpoint&) = delete;

  const std::string& path() const;
  // "zip (PyTorch >= 1.6)" or "legacy (PyTorch < 1.6)".
  std::string format() const;
  const std::map<std::string, TorchTensorInfo>& tensors() const;
  // int, float, bool and str values by dotted path, as text ("n_iter" → "1000000").
  const std::map<std::string, std::string>& scalars() const;

  // The tensor's elements as a CPU tensor of the matching dtype (F32, F64, F16, BF16, I64).
  // Throws Error naming the tensor for other element types or storages that do not hold it.
  Tensor load(const std::string& name) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pconv
