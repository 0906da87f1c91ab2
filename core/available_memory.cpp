// The memory budget: see core/available_memory.h.
#include "core/available_memory.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

namespace pconv {

namespace {

// Values at or above this mean "no limit": cgroup v1 writes 2^63 rounded down to a page.
constexpr int64_t kUnlimited = int64_t(1) << 62;

std::optional<std::string> first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  return line;
}

// A non-negative decimal number; nullopt for "max", garbage or a missing file.
std::optional<int64_t> read_number(const std::string& path) {
  const std::optional<std::string> line = first_line(path);
  if (!line) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(line->c_str(), &end, 10);
  if (end == line->c_str() || errno == ERANGE || line->find('-') != std::string::npos) return std::nullopt;
  return int64_t(std::min<unsigned long long>(v, uint64_t(kUnlimited)));
}

// The value of `key` in a "key value" file (memory.stat), 0 when absent.
int64_t stat_value(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string k;
  long long v = 0;
  while (in >> k >> v)
    if (k == key) return std::max<long long>(v, 0);
  return 0;
}

// The cgroup's path for v2 ("0::/a/b") and for v1's memory controller ("4:memory:/a/b").
struct SelfCgroups {
  std::optional<std::string> v2, v1_memory;
};
SelfCgroups self_cgroups(const std::string& file) {
  SelfCgroups out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string id = line.substr(0, a), controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (id == "0" && controllers.empty()) out.v2 = path;
    std::stringstream list(controllers);
    for (std::string c; std::getline(list, c, ',');)
      if (c == "memory") out.v1_memory = path;
  }
  return out;
}

// `dir` and every folder above it up to `root` (limits of ancestors apply too). A path that is
// not under this root (a container without its own cgroup namespace) still reaches the root.
std::vector<std::string> dirs_up(const std::string& root, std::string path) {
  std::vector<std::string> out;
  while (!path.empty() && path.back() == '/') path.pop_back();
  for (;;) {
    out.push_back(root + path);
    if (path.empty()) break;
    const size_t slash = path.rfind('/');
    path = slash == std::string::npos ? "" : path.substr(0, slash);
  }
  return out;
}

// The least room left below any limit on the chain of folders; nullopt when none sets one.
std::optional<int64_t> cgroup_room(const std::vector<std::string>& dirs, const char* limit_file,
                                   const char* usage_file, const char* inactive_key) {
  std::optional<int64_t> room;
  for (const std::string& dir : dirs) {
    const std::optional<int64_t> limit = read_number(dir + "/" + limit_file);
    if (!limit || *limit >= kUnlimited) continue;
    const int64_t usage = read_number(dir + "/" + usage_file).value_or(0);
    const int64_t inactive = stat_value(dir + "/memory.stat", inactive_key);
    const int64_t used = std::max<int64_t>(usage - inactive, 0);
    const int64_t left = std::max<int64_t>(*limit - used, 0);
    room = room ? std::min(*room, left) : left;
  }
  return room;
}

}  // namespace

MemorySources MemorySources::system() {
  MemorySources s;
  if (const char* root = std::getenv("PCONV_CGROUP_ROOT"); root && *root) s.cgroup_root = root;
  return s;
}

int64_t available_memory_bytes(const MemorySources& sources) {
  std::optional<int64_t> budget;
  auto take = [&](std::optional<int64_t> v) {
    if (v) budget = budget ? std::min(*budget, *v) : *v;
  };
  {
    std::ifstream in(sources.meminfo);
    for (std::string line; std::getline(in, line);) {
      long long kib = 0;
      if (std::sscanf(line.c_str(), "MemAvailable: %lld kB", &kib) == 1 && kib >= 0) take(int64_t(kib) * 1024);
    }
  }
  const SelfCgroups self = self_cgroups(sources.self_cgroup);
  // Without /proc/self/cgroup (a fake tree, an odd system), the root's own files still count.
  take(cgroup_room(dirs_up(sources.cgroup_root, self.v2.value_or("")), "memory.max", "memory.current",
                   "inactive_file"));
  const std::vector<std::string> v1 = dirs_up(sources.cgroup_root + "/memory", self.v1_memory.value_or(""));
  take(cgroup_room(v1, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"));
  return budget.value_or(-1);
}

int64_t available_memory_bytes() { return available_memory_bytes(MemorySources::system()); }

std::string format_bytes(int64_t bytes) {
  char buf[48];
  const double b = double(bytes);
  if (bytes >= (int64_t(1) << 30)) std::snprintf(buf, sizeof buf, "%.1f GiB", b / double(int64_t(1) << 30));
  else if (bytes >= (int64_t(1) << 20)) std::snprintf(buf, sizeof buf, "%.0f MiB", b / double(1 << 20));
  else if (bytes >= 1024) std::snprintf(buf, sizeof buf, "%.0f KiB", b / 1024);
  else std::snprintf(buf, sizeof buf, "%lld bytes", static_cast<long long>(bytes));
  return buf;
}

}  // namespace pconv
