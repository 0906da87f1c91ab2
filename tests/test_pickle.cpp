// The pickle parser (core/io/pickle.h) on pickles Python wrote (bytes pasted from pickle.dumps)
// and on hand-made hostile ones: values come out right, anything outside the policy is
// refused with the opcode or global and its offset, and nothing is ever called.
#include <doctest/doctest.h>

#include <string>

#include "core/dtype.h"
#include "core/io/pickle.h"

using namespace pconv;
using pickle::Kind;
using namespace std::string_literals;

namespace {

pickle::Policy state_dict_policy() {
  pickle::Policy p;
  p.globals["collections.OrderedDict"] = pickle::GlobalUse::EmptyDict;
  p.globals["torch._utils._rebuild_tensor_v2"] = pickle::GlobalUse::Record;
  p.globals["torch.FloatStorage"] = pickle::GlobalUse::Reference;
  p.persistent_ids = true;
  return p;
}

std::string parse_error(const std::string& bytes, const pickle::Policy& policy = state_dict_policy()) {
  try {
    pickle::parse(bytes, 0, policy);
  } catch (const Error& e) {
    return e.what();
  }
  return "(parsed)";
}

// pickle.dumps({'a': 1, 'b': [1.5, -2, 300, 70000, 2**40, -2**63], 'c': ('x', True, False,
// None), 'e': 'ü', 'f': 2**70}, protocol=2)
const std::string kProtocol2(
    "\x80\x02\x7d\x71\x00\x28\x58\x01\x00\x00\x00\x61\x71\x01\x4b\x01\x58\x01\x00\x00\x00\x62\x71\x02\x5d\x71"
    "\x03\x28\x47\x3f\xf8\x00\x00\x00\x00\x00\x00\x4a\xfe\xff\xff\xff\x4d\x2c\x01\x4a\x70\x11\x01\x00\x8a\x06"
    "\x00\x00\x00\x00\x00\x01\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80\x65\x58\x01\x00\x00\x00\x63\x71\x04\x28"
    "\x58\x01\x00\x00\x00\x78\x71\x05\x88\x89\x4e\x74\x71\x06\x58\x01\x00\x00\x00\x65\x71\x07\x58\x02\x00\x00"
    "\x00\xc3\xbc\x71\x08\x58\x01\x00\x00\x00\x66\x71\x09\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x40\x75\x2e",
    130);

// The same dict with b'\x00\x01' added under 'd', protocol 4 (FRAME, MEMOIZE, SHORT_BINUNICODE,
// SHORT_BINBYTES).
const std::string kProtocol4(
    "\x80\x04\x95\x6a\x00\x00\x00\x00\x00\x00\x00\x7d\x94\x28\x8c\x01\x61\x94\x4b\x01\x8c\x01\x62\x94\x5d\x94"
    "\x28\x47\x3f\xf8\x00\x00\x00\x00\x00\x00\x4a\xfe\xff\xff\xff\x4d\x2c\x01\x4a\x70\x11\x01\x00\x8a\x06\x00"
    "\x00\x00\x00\x00\x01\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80\x65\x8c\x01\x63\x94\x28\x8c\x01\x78\x94\x88"
    "\x89\x4e\x74\x94\x8c\x01\x64\x94\x43\x02\x00\x01\x94\x8c\x01\x65\x94\x8c\x02\xc3\xbc\x94\x8c\x01\x66\x94"
    "\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x40\x75\x2e",
    117);

void check_common_values(const pickle::Value& root) {
  REQUIRE(root.kind == Kind::Dict);
  REQUIRE(root.get("a"));
  CHECK(root.get("a")->integer == 1);
  const pickle::Value* b = root.get("b");
  REQUIRE(b->kind == Kind::List);
  REQUIRE(b->items.size() == 6);
  CHECK(b->items[0]->kind == Kind::Float);
  CHECK(b->items[0]->number == 1.5);
  CHECK(b->items[1]->integer == -2);
  CHECK(b->items[2]->integer == 300);
  CHECK(b->items[3]->integer == 70000);
  CHECK(b->items[4]->integer == (int64_t(1) << 40));
  CHECK(b->items[5]->integer == INT64_MIN);
  const pickle::Value* c = root.get("c");
  REQUIRE(c->kind == Kind::Tuple);
  REQUIRE(c->items.size() == 4);
  CHECK(c->items[0]->text == "x");
  CHECK((c->items[1]->kind == Kind::Bool && c->items[1]->boolean));
  CHECK((c->items[2]->kind == Kind::Bool && !c->items[2]->boolean));
  CHECK(c->items[3]->kind == Kind::None);
  CHECK(root.get("e")->text == "\xc3\xbc");
  const pickle::Value* f = root.get("f");  // 2**70 does not fit in 64 bits
  CHECK(f->kind == Kind::BigInt);
  CHECK(f->text == std::string("\x00\x00\x00\x00\x00\x00\x00\x00\x40", 9));
}

}  // namespace

TEST_CASE("pickle: protocol 2 and 4 data as Python wrote it") {
  pickle::Document d2 = pickle::parse(kProtocol2, 0, state_dict_policy());
  check_common_values(*d2.root);
  CHECK(d2.end == kProtocol2.size());
  pickle::Document d4 = pickle::parse(kProtocol4, 0, state_dict_policy());
  check_common_values(*d4.root);
  CHECK(d4.root->get("d")->kind == Kind::Bytes);
  CHECK(d4.root->get("d")->text == std::string("\x00\x01", 2));
}

TEST_CASE("pickle: OrderedDict() through STACK_GLOBAL is an empty dict that SETITEM fills") {
  // pickle.dumps(OrderedDict([('k', 5)]), protocol=4)
  const std::string od(
      "\x80\x04\x95\x29\x00\x00\x00\x00\x00\x00\x00\x8c\x0b\x63\x6f\x6c\x6c\x65\x63\x74\x69\x6f\x6e\x73\x94\x8c"
      "\x0b\x4f\x72\x64\x65\x72\x65\x64\x44\x69\x63\x74\x94\x93\x94\x29\x52\x94\x8c\x01\x6b\x94\x4b\x05\x73\x2e",
      52);
  pickle::Document d = pickle::parse(od, 0, state_dict_policy());
  REQUIRE(d.root->kind == Kind::Dict);
  REQUIRE(d.root->entries.size() == 1);
  CHECK(d.root->get("k")->integer == 5);
}

TEST_CASE("pickle: allowed calls are recorded, not made; persistent ids are kept as data") {
  // _rebuild_tensor_v2(persistent_load(('storage', FloatStorage, '0', 'cpu', 4)), 0, (4,), (1,))
  const std::string bytes =
      "\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n" "(" "(X\x07\x00\x00\x00storage" "ctorch\nFloatStorage\n"
      "X\x01\x00\x00\x00" "0" "X\x03\x00\x00\x00" "cpu" "K\x04" "tQ" "K\x00" "K\x04\x85" "K\x01\x85" "tR."s;
  pickle::Document d = pickle::parse(bytes, 0, state_dict_policy());
  REQUIRE(d.root->kind == Kind::Reduce);
  CHECK(d.root->items[0]->text == "torch._utils._rebuild_tensor_v2");
  const pickle::Value* args = d.root->items[1];
  REQUIRE(args->items.size() == 4);
  REQUIRE(args->items[0]->kind == Kind::PersistentId);
  const pickle::Value* pid = args->items[0]->items[0];
  CHECK(pid->items[1]->kind == Kind::Global);
  CHECK(pid->items[1]->text == "torch.FloatStorage");
  CHECK(args->items[2]->items[0]->integer == 4);
}

TEST_CASE("pickle: globals outside the allow-list are refused, naming them and the offset") {
  // What pickle.dumps of an object whose __reduce__ is (os.system, ('touch x',)) holds.
  const std::string system = "\x80\x02" "cposix\nsystem\n" "X\x07\x00\x00\x00touch x" "\x85R."s;
  std::string e = parse_error(system);
  CHECK(e.find("global 'posix.system' is not allowed") != std::string::npos);
  CHECK(e.find("at byte 2") != std::string::npos);
  e = parse_error("\x80\x04\x8c\x08" "builtins" "\x8c\x04" "eval" "\x93" "\x8c\x01" "1" "\x85R.");
  CHECK(e.find("global 'builtins.eval' is not allowed") != std::string::npos);
  CHECK(e.find("at byte 18") != std::string::npos);
  // An allowed name used for something it is not for: storage types are not callable.
  e = parse_error("\x80\x02" "ctorch\nFloatStorage\n" ")R.");
  CHECK(e.find("may not be called") != std::string::npos);
  // OrderedDict with arguments (it would copy them): refused, not guessed.
  e = parse_error("\x80\x02" "ccollections\nOrderedDict\n" "]\x85R.");
  CHECK(e.find("with arguments") != std::string::npos);
  // Persistent ids where the caller expects none.
  e = parse_error("\x80\x02" "K\x01Q.", pickle::Policy{});
  CHECK(e.find("persistent ids are not expected") != std::string::npos);
}

TEST_CASE("pickle: opcodes a state dict never needs are refused by name") {
  CHECK(parse_error("\x80\x02(cos\nsystem\nX\x01\x00\x00\x00xi."s).find("not allowed") != std::string::npos);
  std::string e = parse_error("\x80\x02(X\x01\x00\x00\x00xios\nsystem\n."s);  // INST
  CHECK(e.find("opcode INST (0x69) is not supported") != std::string::npos);
  CHECK(e.find("at byte 9") != std::string::npos);
  CHECK(parse_error("\x80\x02I42\n.").find("opcode INT") != std::string::npos);
  CHECK(parse_error("\x80\x02\x82\x01.").find("opcode EXT1") != std::string::npos);
  CHECK(parse_error("\x80\x02\x8f.").find("opcode EMPTY_SET") != std::string::npos);
  CHECK(parse_error("\x80\x02\xff.").find("unknown opcode 0xff") != std::string::npos);
  CHECK(parse_error("\x80\x06N.").find("protocol 6") != std::string::npos);
  // BUILD is accepted only on dicts (an OrderedDict's attributes).
  CHECK(parse_error("\x80\x02]}b.").find("BUILD on a list") != std::string::npos);
}

TEST_CASE("pickle: truncated and malformed data end in an error, not a crash") {
  // Every cut is reported as what it is, a truncation (nothing at all for the empty cut), not
  // as whatever the parser meets next.
  for (size_t n = 0; n < kProtocol2.size(); ++n) {
    CAPTURE(n);
    const std::string e = parse_error(kProtocol2.substr(0, n));
    CAPTURE(e);
    CHECK(e.find(n == 0 ? "pickle: no pickle here (end of data)" : "pickle: truncated data") == 0);
  }
  // Lengths far past the end are not allocated.
  CHECK(parse_error(std::string("\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f", 11)).find("truncated") != std::string::npos);
  CHECK(parse_error(std::string("\x80\x02X\xff\xff\xff\xff", 7)).find("truncated") != std::string::npos);
  CHECK(parse_error("\x80\x02h\x05.").find("memo entry 5") != std::string::npos);
  CHECK(parse_error("\x80\x02NN.").find("2 values on the stack") != std::string::npos);
  CHECK(parse_error("\x80\x02s.").find("stack is empty") != std::string::npos);
  CHECK(parse_error("\x80\x02(N(u.").find("SETITEMS target must be a dict") != std::string::npos);
  CHECK(parse_error("\x80\x02}(NNNu.").find("odd number") != std::string::npos);
  CHECK(parse_error("\x80\x02t.").find("no MARK") != std::string::npos);
  pickle::Policy small;
  small.max_values = 3;
  CHECK(parse_error("\x80\x02NNNN.", small).find("more than 3 values") != std::string::npos);
}

TEST_CASE("pickle: a list containing itself parses (the arena owns it)") {
  // l = []; l.append(l); pickle.dumps(l, protocol=2)
  pickle::Document d = pickle::parse(std::string("\x80\x02\x5d\x71\x00\x68\x00\x61\x2e", 9), 0, pickle::Policy{});
  REQUIRE(d.root->kind == Kind::List);
  CHECK(d.root->items[0] == d.root);
}
