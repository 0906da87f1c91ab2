// The pickle parser: Python's own stack machine (Lib/pickle.py, _Unpickler.load_*) reduced to
// the opcodes that carry data, with calls replaced by records. See core/io/pickle.h.
#include "core/io/pickle.h"

#include <bit>
#include <cstring>
#include <unordered_map>

#include "core/dtype.h"

namespace pconv::pickle {

static_assert(std::endian::native == std::endian::little, "pickle integers are little-endian");

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::BigInt: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::PersistentId: return "persistent id";
    case Kind::Reduce: return "call";
  }
  return "?";
}

const Value* Value::get(std::string_view key) const {
  for (const auto& [k, v] : entries)
    if (k->kind == Kind::String && k->text == key) return v;
  return nullptr;
}

namespace {

// Every opcode of Python's pickle module, so a refusal can name what it saw.
const char* opcode_name(uint8_t op) {
  switch (op) {
    case '(': return "MARK";            case '.': return "STOP";
    case '0': return "POP";             case '1': return "POP_MARK";
    case '2': return "DUP";             case 'F': return "FLOAT";
    case 'I': return "INT";             case 'J': return "BININT";
    case 'K': return "BININT1";         case 'L': return "LONG";
    case 'M': return "BININT2";         case 'N': return "NONE";
    case 'P': return "PERSID";          case 'Q': return "BINPERSID";
    case 'R': return "REDUCE";          case 'S': return "STRING";
    case 'T': return "BINSTRING";       case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";         case 'X': return "BINUNICODE";
    case 'a': return "APPEND";          case 'b': return "BUILD";
    case 'c': return "GLOBAL";          case 'd': return "DICT";
    case '}': return "EMPTY_DICT";      case 'e': return "APPENDS";
    case 'g': return "GET";             case 'h': return "BINGET";
    case 'i': return "INST";            case 'j': return "LONG_BINGET";
    case 'l': return "LIST";            case ']': return "EMPTY_LIST";
    case 'o': return "OBJ";             case 'p': return "PUT";
    case 'q': return "BINPUT";          case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";         case 't': return "TUPLE";
    case ')': return "EMPTY_TUPLE";     case 'u': return "SETITEMS";
    case 'G': return "BINFLOAT";        case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";  case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";         case 0x82: return "EXT1";
    case 0x83: return "EXT2";           case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";         case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";         case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";       case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";          case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";      case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";      case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";   case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";          case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";    case 0x98: return "READONLY_BUFFER";
  }
  return nullptr;
}

std::string hex_byte(uint8_t b) {
  const char* digits = "0123456789abcdef";
  return std::string("0x") + digits[b >> 4] + digits[b & 15];
}

class Machine {
 public:
  Machine(std::string_view data, size_t offset, const Policy& policy)
      : data_(data), pos_(offset), policy_(policy) {}

  Document run() {
    if (pos_ >= data_.size()) fail_at(pos_, "no pickle here (end of data)");
    for (;;) {
      op_pos_ = pos_;
      const uint8_t op = uint8_t(take(1)[0]);
      if (op == '.') break;
      step(op);
    }
    if (stack_.size() != 1 || !marks_.empty())
      fail("STOP with " + std::to_string(stack_.size()) + " values on the stack (expected 1)");
    doc_.root = stack_.back();
    doc_.end = pos_;
    return std::move(doc_);
  }

 private:
  [[noreturn]] void fail_at(size_t at, const std::string& reason) const {
    throw Error("pickle: " + reason + " at byte " + std::to_string(at));
  }
  [[noreturn]] void fail(const std::string& reason) const { fail_at(op_pos_, reason); }

  std::string_view take(size_t n) {
    if (n > data_.size() - pos_)
      fail_at(pos_, "truncated data (" + std::to_string(n) + " bytes needed, " +
                        std::to_string(data_.size() - pos_) + " left)");
    std::string_view s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  template <typename T>
  T take_le() {
    T v;
    std::memcpy(&v, take(sizeof(T)).data(), sizeof(T));
    return v;
  }
  std::string take_line() {
    const size_t nl = data_.find('\n', pos_);
    if (nl == std::string_view::npos) fail_at(pos_, "truncated data (no end of line)");
    std::string s(data_.substr(pos_, nl - pos_));
    pos_ = nl + 1;
    return s;
  }

  // Counts bytes about to be held (an estimate of the heap they take, nodes included) against
  // the policy's cap, before they are allocated.
  void charge(size_t bytes) {
    bytes_ += bytes;
    if (bytes_ > policy_.max_bytes)
      fail("the values would take more than " + std::to_string(policy_.max_bytes >> 20) +
           " MiB of memory (a state dict's pickle needs a few)");
  }
  Value* make(Kind kind) {
    if (doc_.arena.size() >= policy_.max_values)
      fail("more than " + std::to_string(policy_.max_values) + " values");
    charge(sizeof(Value) + 2 * sizeof(void*));
    doc_.arena.push_back(std::make_unique<Value>());
    doc_.arena.back()->kind = kind;
    return doc_.arena.back().get();
  }
  Value* make_int(int64_t v) {
    Value* x = make(Kind::Int);
    x->integer = v;
    return x;
  }
  Value* make_text(Kind kind, std::string_view s) {
    charge(s.size());
    Value* x = make(kind);
    x->text = std::string(s);
    return x;
  }

  void push(Value* v) {
    if (stack_.size() == stack_high_) {  // the stack's own growth, counted once
      charge(sizeof(Value*));
      ++stack_high_;
    }
    stack_.push_back(v);
  }
  Value* pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("the stack is empty");
    Value* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Value* top() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("the stack is empty");
    return stack_.back();
  }
  // The values pushed since the last MARK, which is removed.
  std::vector<Value*> pop_to_mark() {
    if (marks_.empty()) fail("no MARK to pop to");
    const size_t m = marks_.back();
    marks_.pop_back();
    charge((stack_.size() - m) * sizeof(Value*));  // the container these become
    std::vector<Value*> items(stack_.begin() + std::ptrdiff_t(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  Value* expect(Value* v, Kind kind, const char* what) {
    if (v->kind != kind)
      fail(std::string(what) + " must be a " + kind_name(kind) + ", got a " + kind_name(v->kind));
    return v;
  }

  void memo_put(uint64_t index) {
    if (memo_.size() >= policy_.max_values) fail("memo too large");
    charge(4 * sizeof(void*));  // a hash node: next, key, value, cached hash
    memo_[index] = top();
  }
  void memo_get(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) fail("memo entry " + std::to_string(index) + " was never stored");
    push(it->second);
  }

  void global(const std::string& module, const std::string& name) {
    const std::string full = module + "." + name;
    if (!policy_.globals.count(full))
      fail("global '" + full + "' is not allowed (only what a PyTorch state dict needs is read; "
           "this file may try to run code)");
    push(make_text(Kind::Global, full));
  }

  // REDUCE and NEWOBJ: a call of an allow-listed global, recorded, never made.
  void call(Value* callable, Value* args) {
    if (callable->kind != Kind::Global) fail(std::string("call of a ") + kind_name(callable->kind));
    expect(args, Kind::Tuple, "call arguments");
    const GlobalUse use = policy_.globals.at(callable->text);
    if (use == GlobalUse::Reference) fail("global '" + callable->text + "' may not be called");
    if (use == GlobalUse::EmptyDict) {
      if (!args->items.empty()) fail(callable->text + "() with arguments");
      push(make(Kind::Dict));
      return;
    }
    Value* r = make(Kind::Reduce);
    r->items = {callable, args};
    push(r);
  }

  void set_items(Value* dict, const std::vector<Value*>& kv) {
    expect(dict, Kind::Dict, "SETITEMS target");
    if (kv.size() % 2) fail("odd number of values for SETITEMS");
    // A key set again replaces its value, as in Python; the index keeps this linear.
    auto& index = key_index_[dict];
    for (size_t i = 0; i < kv.size(); i += 2) {
      const std::string key = key_of(kv[i]);
      charge(sizeof(std::pair<Value*, Value*>) + key.size() + 6 * sizeof(void*));  // entry and index node
      auto [it, fresh] = index.emplace(key, dict->entries.size());
      if (fresh) dict->entries.emplace_back(kv[i], kv[i + 1]);
      else dict->entries[it->second].second = kv[i + 1];
    }
  }
  // Equal strings and integers are equal keys; anything else is itself.
  static std::string key_of(const Value* k) {
    std::string key(1, char(k->kind));  // appended to, not `"x" + s`: GCC 12 warns falsely on that
    switch (k->kind) {
      case Kind::String: case Kind::Bytes: case Kind::BigInt: key += k->text; break;
      case Kind::Int: key += std::to_string(k->integer); break;
      default: key += std::to_string(reinterpret_cast<uintptr_t>(k));
    }
    return key;
  }

  void step(uint8_t op) {
    switch (op) {
      case 0x80: {  // PROTO
        const uint8_t version = uint8_t(take(1)[0]);
        if (version > 5) fail("protocol " + std::to_string(version) + " is newer than 5");
        return;
      }
      case 0x95: {  // FRAME: a length prefix for buffering; the opcodes inside follow as usual
        const uint64_t n = take_le<uint64_t>();
        if (n > data_.size() - pos_) fail("frame of " + std::to_string(n) + " bytes past the end");
        return;
      }
      case '(': marks_.push_back(stack_.size()); return;
      case '0': pop(); return;
      case '1': pop_to_mark(); return;
      case '2': push(top()); return;
      case 'N': push(make(Kind::None)); return;
      case 0x88: case 0x89: {
        Value* b = make(Kind::Bool);
        b->boolean = op == 0x88;
        push(b);
        return;
      }
      case 'J': push(make_int(take_le<int32_t>())); return;
      case 'K': push(make_int(take_le<uint8_t>())); return;
      case 'M': push(make_int(take_le<uint16_t>())); return;
      case 0x8a: case 0x8b: {  // LONG1, LONG4: little-endian two's complement
        const uint64_t n = op == 0x8a ? take_le<uint8_t>() : uint64_t(take_le<int32_t>());
        if (n > 1024) fail("integer of " + std::to_string(n) + " bytes");
        const std::string_view bytes = take(size_t(n));
        if (n <= 8) {
          uint64_t u = 0;
          for (size_t i = 0; i < n; ++i) u |= uint64_t(uint8_t(bytes[i])) << (8 * i);
          if (n > 0 && n < 8 && (uint8_t(bytes[n - 1]) & 0x80)) u |= ~uint64_t(0) << (8 * n);
          push(make_int(int64_t(u)));
        } else {
          push(make_text(Kind::BigInt, bytes));
        }
        return;
      }
      case 'G': {  // BINFLOAT: big-endian IEEE double
        uint64_t u = __builtin_bswap64(take_le<uint64_t>());
        Value* f = make(Kind::Float);
        std::memcpy(&f->number, &u, 8);
        push(f);
        return;
      }
      case 0x8c: push(make_text(Kind::String, take(take_le<uint8_t>()))); return;
      case 'X': push(make_text(Kind::String, take(take_le<uint32_t>()))); return;
      case 0x8d: push(make_text(Kind::String, take(size_t(take_le<uint64_t>())))); return;
      case 'U': push(make_text(Kind::String, take(take_le<uint8_t>()))); return;  // Python 2 str
      case 'T': {
        const int32_t n = take_le<int32_t>();
        if (n < 0) fail("negative string length");
        push(make_text(Kind::String, take(size_t(n))));
        return;
      }
      case 'C': push(make_text(Kind::Bytes, take(take_le<uint8_t>()))); return;
      case 'B': push(make_text(Kind::Bytes, take(take_le<uint32_t>()))); return;
      case 0x8e: push(make_text(Kind::Bytes, take(size_t(take_le<uint64_t>())))); return;
      case ')': push(make(Kind::Tuple)); return;
      case 't': case 0x85: case 0x86: case 0x87: {
        Value* t = make(Kind::Tuple);
        if (op == 't') {
          t->items = pop_to_mark();
        } else {
          t->items.resize(size_t(op - 0x84));
          for (size_t i = t->items.size(); i-- > 0;) t->items[i] = pop();
        }
        push(t);
        return;
      }
      case ']': push(make(Kind::List)); return;
      case 'l': {
        Value* l = make(Kind::List);
        l->items = pop_to_mark();
        push(l);
        return;
      }
      case 'a': {
        Value* v = pop();
        charge(sizeof(Value*));
        expect(top(), Kind::List, "APPEND target")->items.push_back(v);
        return;
      }
      case 'e': {
        std::vector<Value*> items = pop_to_mark();
        Value* l = expect(top(), Kind::List, "APPENDS target");
        charge(items.size() * sizeof(Value*));
        l->items.insert(l->items.end(), items.begin(), items.end());
        return;
      }
      case '}': push(make(Kind::Dict)); return;
      case 'd': {
        Value* d = make(Kind::Dict);
        set_items(d, pop_to_mark());
        push(d);
        return;
      }
      case 's': {
        Value* v = pop();
        Value* k = pop();
        set_items(top(), {k, v});
        return;
      }
      case 'u': {
        std::vector<Value*> kv = pop_to_mark();
        set_items(top(), kv);
        return;
      }
      case 'q': memo_put(take_le<uint8_t>()); return;
      case 'r': memo_put(take_le<uint32_t>()); return;
      case 0x94: memo_put(memo_.size()); return;
      case 'h': memo_get(take_le<uint8_t>()); return;
      case 'j': memo_get(take_le<uint32_t>()); return;
      case 'c': {
        const std::string module = take_line();
        global(module, take_line());
        return;
      }
      case 0x93: {
        Value* name = expect(pop(), Kind::String, "STACK_GLOBAL name");
        Value* module = expect(pop(), Kind::String, "STACK_GLOBAL module");
        global(module->text, name->text);
        return;
      }
      case 'R': case 0x81: {
        Value* args = pop();
        call(pop(), args);
        return;
      }
      case 'b': {
        Value* state = pop();
        Value* target = top();
        // Only OrderedDict's attributes (e.g. a state dict's _metadata) are accepted.
        if (target->kind != Kind::Dict) fail(std::string("BUILD on a ") + kind_name(target->kind));
        if (state->kind != Kind::Dict && state->kind != Kind::None)
          fail(std::string("BUILD with a ") + kind_name(state->kind) + " state");
        target->state = state;
        return;
      }
      case 'Q': {
        if (!policy_.persistent_ids) fail("persistent ids are not expected here");
        Value* p = make(Kind::PersistentId);
        p->items = {pop()};
        push(p);
        return;
      }
    }
    const char* name = opcode_name(op);
    if (name)
      fail(std::string("opcode ") + name + " (" + hex_byte(op) +
           ") is not supported (a PyTorch state dict never needs it)");
    fail("unknown opcode " + hex_byte(op) + " (not a pickle, or a corrupt one)");
  }

  std::string_view data_;
  size_t pos_, op_pos_ = 0;
  const Policy& policy_;
  size_t bytes_ = 0, stack_high_ = 0;
  Document doc_;
  std::vector<Value*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value*> memo_;
  std::unordered_map<const Value*, std::unordered_map<std::string, size_t>> key_index_;
};

}  // namespace

Document parse(std::string_view data, size_t offset, const Policy& policy) {
  return Machine(data, offset, policy).run();
}

}  // namespace pconv::pickle
