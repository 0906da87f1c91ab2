// Reading torch.save's two formats: see core/io/torch_checkpoint.h. The layout of both follows
// torch/serialization.py (_save / _legacy_save and their loaders).
#include "core/io/torch_checkpoint.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "core/io/pickle.h"
#include "core/io/zip_archive.h"

namespace pconv {

namespace {

using pickle::Kind;
using pickle::Value;

// ---------------------------------------------------------------- storage types

struct StorageType {
  const char* name;
  size_t element_size;
  bool has_dtype;
  DType dtype;
};

constexpr StorageType kStorageTypes[] = {
    {"FloatStorage", 4, true, DType::F32},   {"DoubleStorage", 8, true, DType::F64},
    {"HalfStorage", 2, true, DType::F16},    {"BFloat16Storage", 2, true, DType::BF16},
    {"LongStorage", 8, true, DType::I64},    {"IntStorage", 4, false, DType::F32},
    {"ShortStorage", 2, false, DType::F32},  {"CharStorage", 1, false, DType::F32},
    {"ByteStorage", 1, false, DType::F32},   {"BoolStorage", 1, false, DType::F32},
    {"ComplexFloatStorage", 8, false, DType::F32}, {"ComplexDoubleStorage", 16, false, DType::F32},
};

const StorageType* find_storage_type(const std::string& name) {
  for (const StorageType& t : kStorageTypes)
    if (name == t.name) return &t;
  return nullptr;
}

// The allow-list: what a state dict (and a training checkpoint around it) needs, nothing more.
const pickle::Policy& torch_policy() {
  static const pickle::Policy policy = [] {
    pickle::Policy p;
    p.globals["collections.OrderedDict"] = pickle::GlobalUse::EmptyDict;
    p.globals["torch._utils._rebuild_tensor_v2"] = pickle::GlobalUse::Record;
    p.globals["torch._utils._rebuild_tensor"] = pickle::GlobalUse::Record;
    p.globals["torch._utils._rebuild_parameter"] = pickle::GlobalUse::Record;
    for (const StorageType& t : kStorageTypes) {
      p.globals[std::string("torch.") + t.name] = pickle::GlobalUse::Reference;
      p.globals[std::string("torch.cuda.") + t.name] = pickle::GlobalUse::Reference;
    }
    p.persistent_ids = true;
    return p;
  }();
  return policy;
}

// The legacy format's header pickles hold only plain data.
const pickle::Policy& plain_policy() {
  static const pickle::Policy policy;
  return policy;
}

// ---------------------------------------------------------------- files

// The whole file mapped read-only: the pickles are parsed in place and the legacy format's
// storages are read from it without copying the rest (optimiser state) into memory.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(path + ": " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw Error(path + ": not a regular file");
    }
    size_ = size_t(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        throw Error(path + ": " + std::strerror(err));
      }
      data_ = static_cast<const char*>(p);
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<char*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  std::string_view bytes() const { return {data_ ? data_ : "", size_}; }

 private:
  const char* data_ = nullptr;
  size_t size_ = 0;
};

// ---------------------------------------------------------------- pickle values → tensors

int64_t as_int(const Value* v, const char* what) {
  if (!v || v->kind != Kind::Int)
    throw Error(std::string(what) + " is not an integer" + (v ? std::string(" (") + pickle::kind_name(v->kind) + ")" : ""));
  return v->integer;
}
const std::string& as_string(const Value* v, const char* what) {
  if (!v || v->kind != Kind::String) throw Error(std::string(what) + " is not a string");
  return v->text;
}
std::vector<int64_t> as_ints(const Value* v, const char* what) {
  if (!v || v->kind != Kind::Tuple) throw Error(std::string(what) + " is not a tuple");
  std::vector<int64_t> out;
  for (const Value* x : v->items) out.push_back(as_int(x, what));
  return out;
}

struct StorageInfo {
  const StorageType* type = nullptr;
  int64_t numel = 0;
  std::string location;
};

class Interpreter {
 public:
  std::map<std::string, StorageInfo> storages;
  std::map<std::string, TorchTensorInfo> tensors;
  std::map<std::string, std::string> scalars;
  // The bytes the flattened names and scalars may take: values shared through the memo let a
  // small pickle name one long string a million times.
  int64_t max_bytes = int64_t(64) << 20;

  // Dotted paths longer than this are no layer's name; such entries are left out, which also
  // keeps a deep nest of long keys from building gigabytes of path strings.
  static constexpr size_t kMaxPath = 4096;

  void flatten(const Value* v, const std::string& path, int depth) {
    // Values shared through the memo can make a small pickle name exponentially many paths.
    if (++visits_ > kMaxVisits) throw Error("the checkpoint names more than 10 million values");
    if (depth > pickle::Document::walk_limit)
      throw Error("the checkpoint nests deeper than " + std::to_string(pickle::Document::walk_limit) +
                  " levels (or refers to itself) at '" + path + "'");
    auto child = [&](const Value* x, const std::string& key) {
      if (path.size() + 1 + key.size() <= kMaxPath) flatten(x, path.empty() ? key : path + "." + key, depth + 1);
    };
    switch (v->kind) {
      case Kind::Dict:
        for (const auto& [k, x] : v->entries) {
          if (k->kind == Kind::String) child(x, k->text);
          else if (k->kind == Kind::Int) child(x, std::to_string(k->integer));
        }
        return;
      case Kind::List: case Kind::Tuple:
        for (size_t i = 0; i < v->items.size(); ++i) child(v->items[i], std::to_string(i));
        return;
      case Kind::Reduce:
        charge(path.size() + sizeof(TorchTensorInfo), path);
        tensors[path] = tensor(v, path, 0);
        return;
      case Kind::Int: scalar(path, std::to_string(v->integer)); return;
      case Kind::Float: {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.17g", v->number);
        scalar(path, buf);
        return;
      }
      case Kind::Bool: scalar(path, v->boolean ? "True" : "False"); return;
      case Kind::String: scalar(path, v->text); return;
      default: return;
    }
  }

 private:
  static constexpr int64_t kMaxVisits = 10'000'000;
  int64_t visits_ = 0, bytes_ = 0;

  void charge(size_t bytes, const std::string& path) {
    bytes_ += int64_t(bytes) + 64;  // 64: a map node
    if (bytes_ > max_bytes)
      throw Error("the checkpoint's names and values take more than " + std::to_string(max_bytes >> 20) +
                  " MiB (at '" + path.substr(0, 200) + "')");
  }
  void scalar(const std::string& path, std::string value) {
    charge(path.size() + value.size(), path);
    scalars[path] = std::move(value);
  }

  // A Reduce of one of torch's tensor rebuild functions.
  TorchTensorInfo tensor(const Value* r, const std::string& path, int depth) {
    if (depth > 2) throw Error(path + ": tensor rebuilt from a tensor rebuilt from a tensor");
    const std::string& fn = r->items[0]->text;
    const std::vector<Value*>& args = r->items[1]->items;
    try {
      if (fn == "torch._utils._rebuild_parameter") {  // (data, requires_grad, hooks)
        if (args.size() < 1 || args[0]->kind != Kind::Reduce) throw Error("a parameter without tensor data");
        return tensor(args[0], path, depth + 1);
      }
      // _rebuild_tensor(storage, offset, size, stride) and _rebuild_tensor_v2(storage, offset,
      // size, stride, requires_grad, backward_hooks[, metadata]).
      const bool v2 = fn == "torch._utils._rebuild_tensor_v2";
      if (args.size() < 4 || (v2 && args.size() < 6) || args.size() > 7)
        throw Error(fn + " with " + std::to_string(args.size()) + " arguments");
      if (args[0]->kind != Kind::PersistentId) throw Error("tensor data is not a storage reference");
      TorchTensorInfo t = storage_reference(args[0]->items[0]);
      // Checked before the sum: a view's offset plus a hostile one could overflow int64.
      const int64_t offset = as_int(args[1], "storage offset");
      const int64_t storage_numel = storages.at(t.storage_key).numel;
      if (offset < 0 || offset > storage_numel - t.storage_offset)
        throw Error("storage offset " + std::to_string(offset) + " outside storage " + t.storage_key + " of " +
                    std::to_string(storage_numel) + " elements");
      t.storage_offset += offset;
      t.shape = as_ints(args[2], "tensor size");
      t.strides = as_ints(args[3], "tensor stride");
      if (t.shape.size() != t.strides.size())
        throw Error(std::to_string(t.shape.size()) + " sizes and " + std::to_string(t.strides.size()) + " strides");
      check_extent(t);
      return t;
    } catch (const Error& e) {
      throw Error("tensor '" + path + "': " + e.what());
    }
  }

  // ('storage', storage_type, key, location, numel[, view_metadata]); the legacy format's
  // view_metadata (view_key, offset, size) makes the storage a slice of the root one.
  TorchTensorInfo storage_reference(const Value* pid) {
    if (pid->kind != Kind::Tuple || pid->items.size() < 5 || pid->items.size() > 6 ||
        pid->items[0]->kind != Kind::String || pid->items[0]->text != "storage")
      throw Error("unknown persistent id (not a torch storage)");
    const Value* type = pid->items[1];
    if (type->kind != Kind::Global) throw Error("storage type is not a torch storage class");
    std::string name = type->text.substr(type->text.rfind('.') + 1);
    StorageInfo info{find_storage_type(name), as_int(pid->items[4], "storage size"),
                     as_string(pid->items[3], "storage location")};
    if (!info.type) throw Error("unknown storage type " + type->text);
    if (info.numel < 0 || info.numel > (int64_t(1) << 40)) throw Error("storage size " + std::to_string(info.numel));
    const std::string key = as_string(pid->items[2], "storage key");
    auto [it, fresh] = storages.emplace(key, info);
    if (!fresh && (it->second.type != info.type || it->second.numel != info.numel))
      throw Error("storage " + key + " is described twice, differently");
    TorchTensorInfo t;
    t.storage_type = name;
    t.location = info.location;
    t.storage_key = key;
    if (pid->items.size() == 6 && pid->items[5]->kind != Kind::None) {
      const Value* view = pid->items[5];
      if (view->kind != Kind::Tuple || view->items.size() != 3) throw Error("malformed storage view");
      const int64_t offset = as_int(view->items[1], "view offset"), size = as_int(view->items[2], "view size");
      if (offset < 0 || size < 0 || offset > info.numel || size > info.numel - offset)
        throw Error("storage view [" + std::to_string(offset) + ", +" + std::to_string(size) +
                    ") outside storage " + key + " of " + std::to_string(info.numel) + " elements");
      t.storage_offset = offset;
    }
    return t;
  }

  // Every element the tensor addresses lies inside its storage.
  void check_extent(const TorchTensorInfo& t) {
    const int64_t numel_storage = storages.at(t.storage_key).numel;
    if (t.storage_offset < 0) throw Error("negative storage offset");
    __int128 last = t.storage_offset, count = 1;
    for (size_t d = 0; d < t.shape.size(); ++d) {
      if (t.shape[d] < 0 || t.strides[d] < 0) throw Error("negative size or stride");
      count *= t.shape[d];
      if (count > (__int128(1) << 40)) throw Error("over 2^40 elements");
      if (t.shape[d] > 0) last += __int128(t.shape[d] - 1) * t.strides[d];
    }
    if (count > 0 && last >= numel_storage)
      throw Error("shape " + shape_str(t.shape) + " reaches element " + std::to_string(int64_t(last)) +
                  " of storage " + t.storage_key + ", which holds " + std::to_string(numel_storage));
  }
};

}  // namespace

// ---------------------------------------------------------------- the checkpoint

struct TorchCheckpoint::Impl {
  std::string path;
  TorchReadLimits limits;
  bool zip = false;
  std::unique_ptr<MappedFile> file;    // legacy: storages are read from here
  std::unique_ptr<ZipArchive> archive;  // zip
  std::string prefix;                   // zip: "<name>/"
  std::map<std::string, size_t> storage_offsets;  // legacy: key → file offset of the elements
  Interpreter data;

  void read_zip();
  void read_legacy();
  // The allow-list with the limits' cap on the values' memory.
  pickle::Policy object_policy() const {
    pickle::Policy p = torch_policy();
    p.max_bytes = size_t(std::max<int64_t>(limits.max_pickle_bytes, 0));
    return p;
  }
  std::string_view storage_bytes(const std::string& key, std::string& holder) const;
};

void TorchCheckpoint::Impl::read_zip() {
  archive = std::make_unique<ZipArchive>(path);
  for (const std::string& name : archive->names()) {
    const size_t slash = name.find('/');
    if (slash != std::string::npos && name.substr(slash) == "/data.pkl") {
      prefix = name.substr(0, slash + 1);
      break;
    }
  }
  if (prefix.empty()) throw Error("a zip archive without <name>/data.pkl: not a PyTorch checkpoint");
  if (archive->has(prefix + "byteorder")) {
    const std::string order = archive->read(prefix + "byteorder", -1, 16);
    if (order != "little") throw Error("saved with byte order '" + order + "'; only little-endian files are read");
  }
  const std::string pkl = archive->read(prefix + "data.pkl", -1, limits.max_pickle_bytes);
  const pickle::Document doc = pickle::parse(pkl, 0, object_policy());
  data.flatten(doc.root, "", 0);
  for (const auto& [key, info] : data.storages)
    if (!archive->has(prefix + "data/" + key)) throw Error("storage " + key + " is missing from the zip archive");
}

void TorchCheckpoint::Impl::read_legacy() {
  file = std::make_unique<MappedFile>(path);
  const std::string_view bytes = file->bytes();
  const pickle::Document magic = pickle::parse(bytes, 0, plain_policy());
  // torch.serialization.MAGIC_NUMBER = 0x1950a86a20f9469cfc6c, pickled as LONG1.
  const std::string kMagic("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10);
  if (magic.root->kind != Kind::BigInt || magic.root->text != kMagic)
    throw Error("a pickle that is not a PyTorch checkpoint (no torch.save magic number)");
  const pickle::Document protocol = pickle::parse(bytes, magic.end, plain_policy());
  if (protocol.root->kind != Kind::Int || protocol.root->integer != 1001)
    throw Error("legacy checkpoint protocol " +
                (protocol.root->kind == Kind::Int ? std::to_string(protocol.root->integer) : std::string("?")) +
                ", only 1001 is known");
  const pickle::Document sys_info = pickle::parse(bytes, protocol.end, plain_policy());
  if (sys_info.root->kind != Kind::Dict) throw Error("malformed system info");
  const Value* little = sys_info.root->get("little_endian");
  if (!little || little->kind != Kind::Bool || !little->boolean)
    throw Error("saved on a big-endian machine; only little-endian files are read");
  const pickle::Document object = pickle::parse(bytes, sys_info.end, object_policy());
  data.flatten(object.root, "", 0);
  const pickle::Document keys = pickle::parse(bytes, object.end, plain_policy());
  if (keys.root->kind != Kind::List) throw Error("malformed storage key list");

  // Each storage: its element count (int64, little-endian) and the elements.
  size_t pos = keys.end;
  for (const Value* k : keys.root->items) {
    const std::string& key = as_string(k, "storage key");
    auto it = data.storages.find(key);
    if (it == data.storages.end()) throw Error("storage " + key + " is listed but no tensor uses it");
    const size_t elem = it->second.type->element_size;
    if (bytes.size() - pos < 8) throw Error("truncated: storage " + key + " is missing");
    int64_t numel;
    std::memcpy(&numel, bytes.data() + pos, 8);
    if (numel != it->second.numel)
      throw Error("storage " + key + " holds " + std::to_string(numel) + " elements, the pickle says " +
                  std::to_string(it->second.numel));
    pos += 8;
    if (uint64_t(numel) * elem > bytes.size() - pos)
      throw Error("truncated: storage " + key + " needs " + std::to_string(uint64_t(numel) * elem) +
                  " bytes, " + std::to_string(bytes.size() - pos) + " left");
    storage_offsets[key] = pos;
    pos += size_t(numel) * elem;
  }
  for (const auto& [key, info] : data.storages)
    if (!storage_offsets.count(key)) throw Error("storage " + key + " is not in the file");
}

std::string_view TorchCheckpoint::Impl::storage_bytes(const std::string& key, std::string& holder) const {
  const StorageInfo& info = data.storages.at(key);
  const size_t nbytes = size_t(info.numel) * info.type->element_size;
  if (zip) {
    holder = archive->read(prefix + "data/" + key, int64_t(nbytes), limits.max_storage_bytes);
    return holder;
  }
  return file->bytes().substr(storage_offsets.at(key), nbytes);
}

TorchCheckpoint::TorchCheckpoint(const std::string& path, const TorchReadLimits& limits)
    : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->limits = limits;
  impl_->data.max_bytes = limits.max_pickle_bytes;
  try {
    char head[4] = {0, 0, 0, 0};
    {
      MappedFile probe(path);
      const std::string_view b = probe.bytes();
      if (b.empty()) throw Error("empty file");
      std::memcpy(head, b.data(), std::min<size_t>(4, b.size()));
    }
    if (std::memcmp(head, "PK\x03\x04", 4) == 0 || std::memcmp(head, "PK\x05\x06", 4) == 0) {
      impl_->zip = true;
      impl_->read_zip();
    } else if (uint8_t(head[0]) == 0x80) {
      impl_->read_legacy();
    } else if (std::memcmp(head, "\x89HDF", 4) == 0) {
      throw Error("an HDF5 file (Keras .h5), not a PyTorch checkpoint");
    } else {
      throw Error("neither a zip (PyTorch >= 1.6) nor a pickle (older PyTorch) checkpoint");
    }
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.rfind(path + ": ", 0) == 0) throw;
    throw Error(path + ": " + what);
  }
}

TorchCheckpoint::~TorchCheckpoint() = default;

const std::string& TorchCheckpoint::path() const { return impl_->path; }
std::string TorchCheckpoint::format() const {
  return impl_->zip ? "zip (PyTorch >= 1.6)" : "legacy (PyTorch < 1.6)";
}
const std::map<std::string, TorchTensorInfo>& TorchCheckpoint::tensors() const { return impl_->data.tensors; }
const std::map<std::string, std::string>& TorchCheckpoint::scalars() const { return impl_->data.scalars; }

Tensor TorchCheckpoint::load(const std::string& name) const {
  auto it = impl_->data.tensors.find(name);
  if (it == impl_->data.tensors.end()) throw Error(impl_->path + ": no tensor '" + name + "'");
  const TorchTensorInfo& t = it->second;
  const StorageType* type = find_storage_type(t.storage_type);
  if (!type->has_dtype)
    throw Error(impl_->path + ": tensor '" + name + "' holds " + t.storage_type + " elements, which pconv does not read");
  // Only a tensor that repeats elements (stride 0) can be larger than its storage; state dicts
  // hold none, and refusing them keeps a hostile size from allocating terabytes.
  const int64_t storage_numel = impl_->data.storages.at(t.storage_key).numel;
  int64_t numel = 1;
  for (int64_t d : t.shape) numel *= d;
  if (numel > storage_numel)
    throw Error(impl_->path + ": tensor '" + name + "' has " + std::to_string(numel) + " elements, its storage " +
                std::to_string(storage_numel));
  std::string holder;
  std::string_view bytes;
  try {
    bytes = impl_->storage_bytes(t.storage_key, holder);
  } catch (const Error& e) {
    throw Error(impl_->path + ": tensor '" + name + "': " + e.what());
  }
  Tensor out = Tensor::empty(t.shape, type->dtype);
  const size_t elem = type->element_size;
  char* dst = out.data<char>();
  const int64_t n = out.numel(), rank = int64_t(t.shape.size());
  bool contiguous = true;
  for (int64_t d = rank - 1, expect = 1; d >= 0; expect *= t.shape[size_t(d)], --d)
    if (t.shape[size_t(d)] != 1 && t.strides[size_t(d)] != expect) contiguous = false;
  if (contiguous) {
    std::memcpy(dst, bytes.data() + size_t(t.storage_offset) * elem, size_t(n) * elem);
    return out;
  }
  // Walk the elements in row-major order with an index counter (strides may be anything).
  std::vector<int64_t> index(size_t(rank), 0);
  int64_t src = t.storage_offset;
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(dst + size_t(i) * elem, bytes.data() + size_t(src) * elem, elem);
    for (int64_t d = rank - 1; d >= 0; --d) {
      src += t.strides[size_t(d)];
      if (++index[size_t(d)] < t.shape[size_t(d)]) break;
      src -= t.strides[size_t(d)] * t.shape[size_t(d)];
      index[size_t(d)] = 0;
    }
  }
  return out;
}

}  // namespace pconv
