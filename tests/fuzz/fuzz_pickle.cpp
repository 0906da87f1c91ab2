// libFuzzer target: the pickle parser (core/io/pickle.h) with the torch checkpoint's allow-list,
// persistent ids on, and a value cap of 16 MiB (the checkpoint reader's is 64 MiB; smaller here
// so that no single allocation nears the fuzzer's 64 MiB cap). A parsed document is walked as
// the checkpoint reader walks it, so cycles and depth are exercised too.
#include "core/dtype.h"
#include "core/io/pickle.h"

using namespace pconv;

namespace {

const pickle::Policy& policy() {
  static const pickle::Policy p = [] {
    pickle::Policy q;
    q.globals["collections.OrderedDict"] = pickle::GlobalUse::EmptyDict;
    q.globals["torch._utils._rebuild_tensor_v2"] = pickle::GlobalUse::Record;
    q.globals["torch._utils._rebuild_parameter"] = pickle::GlobalUse::Record;
    q.globals["torch.FloatStorage"] = pickle::GlobalUse::Reference;
    q.persistent_ids = true;
    q.max_bytes = size_t(16) << 20;
    return q;
  }();
  return p;
}

// Counts what is reachable within the walk limit (as Interpreter::flatten does), visits capped.
void walk(const pickle::Value* v, int depth, int64_t& visits) {
  if (depth > pickle::Document::walk_limit || ++visits > 1'000'000) return;
  for (const pickle::Value* x : v->items) walk(x, depth + 1, visits);
  for (const auto& [k, x] : v->entries) {
    walk(k, depth + 1, visits);
    walk(x, depth + 1, visits);
  }
  if (v->state) walk(v->state, depth + 1, visits);
  (void)v->get("k");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  size_t offset = 0;
  // Pickles may follow each other (the legacy checkpoint format has five in a row).
  for (int i = 0; i < 6 && offset < size; ++i) {
    try {
      const pickle::Document doc = pickle::parse(bytes, offset, policy());
      int64_t visits = 0;
      walk(doc.root, 0, visits);
      offset = doc.end;
    } catch (const Error&) {
      break;
    }
  }
  return 0;
}
