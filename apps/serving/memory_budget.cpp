#include "apps/serving/memory_budget.h"

namespace pconv::serve {

std::shared_ptr<void> MemoryBudget::try_reserve(int64_t bytes) {
  bytes = std::max<int64_t>(bytes, 0);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (bytes > total_ - used_) return nullptr;
    used_ += bytes;
  }
  // The deleter gives the bytes back; the pointer itself points at nothing in particular.
  return std::shared_ptr<void>(static_cast<void*>(this), [this, bytes](void*) {
    std::lock_guard<std::mutex> lock(mutex_);
    used_ -= bytes;
  });
}

int64_t MemoryBudget::used() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return used_;
}

}  // namespace pconv::serve
