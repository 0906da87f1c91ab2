#pragma once
// How much memory this process may still allocate without being killed: the budget against
// which inpaint-run, inpaint-serve and the checkpoint readers refuse work up front.
//
// A machine's free memory (MemAvailable of /proc/meminfo) is not the limit inside a container:
// there the kernel kills a process that passes its cgroup's limit however much the machine
// has free. So the budget is the smallest of
//   - MemAvailable;
//   - for the process's cgroup and each of its ancestors, cgroup v2: memory.max − (memory.current
//     − inactive_file of memory.stat); cgroup v1 (memory controller): memory.limit_in_bytes −
//     (memory.usage_in_bytes − total_inactive_file).
// Inactive file pages are page cache the kernel reclaims before killing anything, so they count
// as free (as kubelet's working set does). "max" and v1's "unlimited" (about 2^63) set no limit.
#include <cstdint>
#include <string>

namespace pconv {

// Where the numbers are read; tests point these at a fake tree.
struct MemorySources {
  std::string meminfo = "/proc/meminfo";
  std::string self_cgroup = "/proc/self/cgroup";  // lines "0::/path" (v2), "N:...memory...:/path" (v1)
  std::string cgroup_root = "/sys/fs/cgroup";     // v2 files in <root><path>/, v1 in <root>/memory<path>/
  // The defaults, with cgroup_root taken from $PCONV_CGROUP_ROOT when it is set (a test runs the
  // apps against a fake cgroup tree that way).
  static MemorySources system();
};

// The budget in bytes (never negative); -1 when none of the sources could be read.
int64_t available_memory_bytes(const MemorySources& sources);
int64_t available_memory_bytes();  // MemorySources::system()

// "1.5 GiB", "600 MiB": for messages.
std::string format_bytes(int64_t bytes);

}  // namespace pconv
