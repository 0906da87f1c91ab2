#pragma once
// Shared by the libFuzzer targets: the loaders take paths, so each input is written to an
// in-memory file (memfd) and read back through /proc/self/fd/N, the same code path as a file
// on disk without touching one. Expected failures are pconv::Error; anything else escaping a
// target (another exception, a crash, a leak, an allocation over -malloc_limit_mb) is a bug.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace pconv::fuzz {

class MemoryFile {
 public:
  MemoryFile() : fd_(memfd_create("pconv-fuzz", MFD_CLOEXEC)) {
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemoryFile() { ::close(fd_); }

  // Replaces the contents with these bytes; returns the path to open.
  const std::string& write(const uint8_t* data, size_t size) {
    if (::ftruncate(fd_, 0) != 0 || (size > 0 && ::pwrite(fd_, data, size, 0) != ssize_t(size))) {
      std::perror("memfd write");
      std::abort();
    }
    return path_;
  }

 private:
  int fd_;
  std::string path_;
};

}  // namespace pconv::fuzz
