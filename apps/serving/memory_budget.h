#pragma once
// The memory inpaint-serve lets requests hold at once: bodies as they arrive (their
// Content-Length, reserved before a byte is read), then the decoded images (reserved from the
// images' headers, before any pixel is decoded), until the answer is sent. A request that
// could never fit is refused with 413, one that does not fit now with 503, so twelve large
// uploads at once cost what the budget allows and not threads × largest image.
#include <cstdint>
#include <algorithm>
#include <memory>
#include <mutex>

namespace pconv::serve {

class MemoryBudget {
 public:
  explicit MemoryBudget(int64_t total_bytes) : total_(total_bytes) {}
  // A hold on `bytes`, released when the last copy of the pointer goes; nullptr when they do
  // not fit next to what is held now.
  std::shared_ptr<void> try_reserve(int64_t bytes);
  int64_t total() const { return total_; }
  int64_t used() const;

 private:
  const int64_t total_;
  mutable std::mutex mutex_;
  int64_t used_ = 0;
};

}  // namespace pconv::serve
