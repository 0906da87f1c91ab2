// safetensors reading (every bound checked before a byte is trusted) and atomic writing.
// Format: u64 little-endian header length N, N bytes of JSON, then the data buffer that the
// JSON's data_offsets index (relative to the buffer's start).
#include "core/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

namespace pconv {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; pconv reads it with memcpy");

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's limit
constexpr const char* kMetadataKey = "__metadata__";

using json = nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& reason) {
  throw Error(path + ": " + reason);
}

// Text and JSON values quoted in messages, cut short (they come from the file).
std::string shown(const std::string& s, size_t most = 60) { return s.size() <= most ? s : s.substr(0, most - 3) + "..."; }
std::string shown(const json& j) { return shown(j.dump()); }

// A header nests three deep at most: {"name": {"shape": [...]}}. Checked before parsing, so a
// hostile "[[[[..." cannot make the parser build (or a message dump) a million-deep value.
constexpr int kMaxHeaderDepth = 3;
bool nesting_within(const std::string& text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) return false;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

std::string system_reason(int err) { return std::strerror(err); }

const char* safetensors_dtype(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::I64: return "I64";
  }
  return "?";
}

bool parse_dtype(const std::string& s, DType& out) {
  for (DType d : {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I64})
    if (s == safetensors_dtype(d)) {
      out = d;
      return true;
    }
  return false;
}

// Closes the descriptor on every path out.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// Reads exactly `bytes` at `offset`; false when the file ends first.
bool read_at(int fd, void* dst, size_t bytes, uint64_t offset, int& err) {
  char* p = static_cast<char*>(dst);
  while (bytes > 0) {
    ssize_t r = ::pread(fd, p, bytes, off_t(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      err = errno;
      return false;
    }
    if (r == 0) {
      err = 0;
      return false;
    }
    p += r;
    bytes -= size_t(r);
    offset += uint64_t(r);
  }
  return true;
}

// A JSON number that is a non-negative integer (1.0, -1 and "1" are refused).
bool as_count(const json& j, uint64_t& out) {
  if (!j.is_number_integer()) return false;
  if (j.is_number_unsigned()) {
    out = j.get<uint64_t>();
    return true;
  }
  int64_t v = j.get<int64_t>();
  if (v < 0) return false;
  out = uint64_t(v);
  return true;
}

struct Entry {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

Entry parse_entry(const std::string& path, const std::string& name, const json& j,
                  uint64_t data_bytes) {
  const std::string who = "tensor '" + shown(name) + "'";
  if (!j.is_object()) fail(path, who + " is not a JSON object");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!j.contains(key)) fail(path, who + " has no \"" + key + "\"");
  Entry e;
  e.name = name;
  const json& jd = j["dtype"];
  if (!jd.is_string()) fail(path, who + " has a dtype that is not a string");
  if (!parse_dtype(jd.get<std::string>(), e.dtype))
    fail(path, who + " has unsupported dtype '" + shown(jd.get<std::string>()) +
                   "' (pconv reads F32, F64, BF16, F16, I64)");

  const json& js = j["shape"];
  if (!js.is_array()) fail(path, who + " has a shape that is not an array");
  uint64_t numel = 1;
  for (const json& d : js) {
    uint64_t n;
    if (!as_count(d, n) || n > uint64_t(std::numeric_limits<int64_t>::max()))
      fail(path, who + " has shape " + shown(js) + ": dimensions must be non-negative integers");
    if (n != 0 && numel > std::numeric_limits<uint64_t>::max() / 16 / n)
      fail(path, who + " has shape " + shown(js) + " whose size overflows");
    numel *= n;
    e.shape.push_back(int64_t(n));
  }

  const json& jo = j["data_offsets"];
  if (!jo.is_array() || jo.size() != 2 || !as_count(jo[0], e.begin) || !as_count(jo[1], e.end))
    fail(path, who + " has data_offsets " + shown(jo) + ": expected [begin, end] of non-negative integers");
  const std::string offsets = "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
  if (e.begin > e.end) fail(path, who + " has data_offsets " + offsets + " with begin after end");
  if (e.end > data_bytes)
    fail(path, who + " has data_offsets " + offsets + " past the end of the data (" +
                   std::to_string(data_bytes) + " bytes; truncated file?)");
  const uint64_t expected = numel * dtype_size(e.dtype);
  if (e.end - e.begin != expected)
    fail(path, who + " has shape " + shape_str(e.shape) + " " + jd.get<std::string>() + " (" +
                   std::to_string(expected) + " bytes) but data_offsets " + offsets + " span " +
                   std::to_string(e.end - e.begin) + " bytes");
  return e;
}

// The non-empty tensors must tile the data buffer: no overlap, no gap, nothing left over.
void check_layout(const std::string& path, std::vector<Entry> entries, uint64_t data_bytes) {
  std::erase_if(entries, [](const Entry& e) { return e.begin == e.end; });
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  uint64_t covered = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    if (e.begin < covered)
      fail(path, "tensors '" + shown(entries[i - 1].name) + "' and '" + shown(e.name) + "' overlap (bytes " +
                     std::to_string(e.begin) + " to " + std::to_string(covered) + ")");
    if (e.begin > covered)
      fail(path, "data bytes " + std::to_string(covered) + " to " + std::to_string(e.begin) +
                     " belong to no tensor");
    covered = e.end;
  }
  if (covered != data_bytes)
    fail(path, "the data has " + std::to_string(data_bytes) + " bytes but the tensors cover " +
                   std::to_string(covered));
}

}  // namespace

SafetensorsFile load_safetensors(const std::string& path) {
  Fd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (file.fd < 0) {
    if (errno == ENOENT) fail(path, "no such file");
    fail(path, "cannot open (" + system_reason(errno) + ")");
  }
  struct stat st {};
  if (::fstat(file.fd, &st) != 0) fail(path, "cannot stat (" + system_reason(errno) + ")");
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  const uint64_t file_bytes = uint64_t(st.st_size);

  int err = 0;
  unsigned char len_bytes[8];
  if (file_bytes < 8) fail(path, "truncated: " + std::to_string(file_bytes) + " bytes, no 8-byte header length");
  if (!read_at(file.fd, len_bytes, 8, 0, err)) fail(path, "cannot read the header length (" + system_reason(err) + ")");
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | len_bytes[i];
  if (header_bytes > kMaxHeaderBytes)
    fail(path, "header length " + std::to_string(header_bytes) + " is over the 100 MB limit (not a safetensors file?)");
  if (header_bytes > file_bytes - 8)
    fail(path, "truncated: header length " + std::to_string(header_bytes) + " but only " +
                   std::to_string(file_bytes - 8) + " bytes follow");
  std::string text(header_bytes, '\0');
  if (!read_at(file.fd, text.data(), header_bytes, 8, err))
    fail(path, "cannot read the header (" + (err ? system_reason(err) : "file shrank") + ")");

  if (!nesting_within(text, kMaxHeaderDepth))
    fail(path, "header nests deeper than a safetensors header does (" + std::to_string(kMaxHeaderDepth) + " levels)");
  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e999
    fail(path, "header is not valid JSON (" + shown(e.what(), 200) + ")");
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");

  const uint64_t data_start = 8 + header_bytes;
  const uint64_t data_bytes = file_bytes - data_start;
  SafetensorsFile out;
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      if (!value.is_object()) fail(path, "__metadata__ is not a JSON object");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string())
          fail(path, "__metadata__ value of '" + shown(mk) + "' is not a string (" + shown(mv) + ")");
        out.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, key, value, data_bytes));
  }
  check_layout(path, entries, data_bytes);

  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype, Device::CPU);
    if (!read_at(file.fd, t.raw_data(), size_t(e.end - e.begin), data_start + e.begin, err))
      fail(path, "cannot read tensor '" + e.name + "' (" + (err ? system_reason(err) : "file shrank") + ")");
    out.tensors.emplace(e.name, std::move(t));
  }
  return out;
}

namespace {

struct Chunk {
  const void* data;
  size_t bytes;
};

// Temp file in the target's folder, write, fsync, rename over the target, fsync the folder.
// Any failure removes the temp file and leaves a previous target untouched.
void write_chunks_atomic(const std::string& path, const std::vector<Chunk>& chunks) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(path, "cannot write (" + system_reason(errno) + ")");
  auto abandon = [&](const std::string& what, int e) {
    ::close(fd);
    ::unlink(tmp.c_str());
    fail(path, what + " (" + system_reason(e) + ")");
  };
  for (const Chunk& c : chunks) {
    const char* p = static_cast<const char*>(c.data);
    size_t left = c.bytes;
    while (left > 0) {
      ssize_t w = ::write(fd, p, left);
      if (w < 0) {
        if (errno == EINTR) continue;
        abandon("cannot write", errno);
      }
      p += w;
      left -= size_t(w);
    }
  }
  if (::fsync(fd) != 0) abandon("cannot flush to disk", errno);
  if (::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail(path, "cannot write (" + system_reason(e) + ")");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail(path, "cannot replace (" + system_reason(e) + ")");
  }
  // The rename is durable only once the folder's entry is on disk.
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    // Some filesystems cannot sync a folder (EINVAL); the file itself is already synced.
    if (::fsync(dfd) != 0 && errno != EINVAL && errno != ENOTSUP) {
      int e = errno;
      ::close(dfd);
      fail(path, "cannot flush the folder to disk (" + system_reason(e) + ")");
    }
    ::close(dfd);
  }
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_chunks_atomic(path, {Chunk{bytes.data(), bytes.size()}});
}

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::vector<Tensor> host;  // keeps GPU copies alive until written
  std::vector<Chunk> chunks(1);
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {  // std::map: sorted by name
    if (name.empty() || name == kMetadataKey)
      fail(path, "invalid tensor name '" + name + "'");
    if (!t.defined()) fail(path, "tensor '" + name + "' is undefined");
    Tensor c = t.device() == Device::CPU ? t : t.detach().to(Device::CPU);
    host.push_back(c);
    header[name] = {{"dtype", safetensors_dtype(c.dtype())},
                    {"shape", c.shape()},
                    {"data_offsets", {offset, offset + c.nbytes()}}};
    if (c.nbytes() > 0) chunks.push_back(Chunk{c.raw_data(), c.nbytes()});
    offset += c.nbytes();
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::type_error& e) {  // a name that is not valid UTF-8
    fail(path, std::string("cannot encode the header (") + e.what() + ")");
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned
  std::string prefix(8, '\0');
  for (int i = 0; i < 8; ++i) prefix[size_t(i)] = char((uint64_t(text.size()) >> (8 * i)) & 0xff);
  prefix += text;
  chunks[0] = Chunk{prefix.data(), prefix.size()};
  write_chunks_atomic(path, chunks);
}

}  // namespace pconv
