#pragma once
// A pickle *parser* for the part of Python's pickle format that PyTorch checkpoints use
// (binary protocols 2–5). It is a stack machine over data only: it never imports, calls or
// constructs anything. A GLOBAL is checked against the caller's allow-list and stays an inert
// name; REDUCE/NEWOBJ are accepted only for allow-listed names and build either an empty dict
// (OrderedDict()) or a `Reduce` record (callable name + arguments) for the caller to
// interpret (e.g. torch._utils._rebuild_tensor_v2 → tensor metadata). Every other opcode,
// global or call is refused with its name and byte offset, so a file that would run code when
// unpickled by Python is rejected here.
//
// Values live in the Document's arena and point at each other with raw pointers: a pickle can
// build cycles (a list appended to itself through the memo), which the arena frees without
// leaking. Walkers of the result must not assume a tree (see Document::walk_limit).
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pconv::pickle {

enum class Kind { None, Bool, Int, BigInt, Float, String, Bytes, Tuple, List, Dict, Global, PersistentId, Reduce };
const char* kind_name(Kind k);

struct Value {
  Kind kind = Kind::None;
  bool boolean = false;
  int64_t integer = 0;
  double number = 0;
  // String and Bytes: the bytes; BigInt: little-endian two's complement; Global: "module.name".
  std::string text;
  // Tuple, List: the elements. PersistentId: {pid}. Reduce: {callable (Global), args (Tuple)}.
  std::vector<Value*> items;
  std::vector<std::pair<Value*, Value*>> entries;  // Dict, in insertion order
  Value* state = nullptr;                          // Dict: what BUILD gave it (an object's __dict__)

  // Dict lookup by string key; null when absent.
  const Value* get(std::string_view key) const;
};

// What the caller allows a global to be used for.
enum class GlobalUse {
  Reference,  // may appear as a value (e.g. a storage type inside a persistent id), not be called
  EmptyDict,  // callable with no arguments, gives an empty dict (collections.OrderedDict)
  Record,     // callable: REDUCE gives a Reduce value for the caller to interpret
};

struct Policy {
  std::map<std::string, GlobalUse> globals;  // by "module.name"
  bool persistent_ids = false;               // BINPERSID gives PersistentId values
  // Guards memory on hostile input: a few bytes of opcodes can build a value, a long string
  // copies its bytes, and references through the memo make containers grow without new values,
  // so the bytes the values, their strings, containers, memo and stack hold are capped too
  // (counted as they are made; a state dict's pickle needs kilobytes to a few megabytes).
  size_t max_values = 50'000'000;
  size_t max_bytes = size_t(256) << 20;
};

struct Document {
  std::vector<std::unique_ptr<Value>> arena;
  Value* root = nullptr;
  size_t end = 0;  // offset just past the STOP opcode (pickles can follow each other in a file)
  // Walkers limit their depth to this, so cyclic or absurdly nested data ends in an error.
  static constexpr int walk_limit = 64;
};

// Parses one pickle starting at data[offset]. Throws pconv::Error
// "pickle: <reason> at byte <n>" on anything outside the policy (its caps included), malformed
// or truncated data.
Document parse(std::string_view data, size_t offset, const Policy& policy);

}  // namespace pconv::pickle
