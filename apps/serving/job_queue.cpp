#include "apps/serving/job_queue.h"

namespace pconv {

JobQueue::JobQueue(size_t capacity) : capacity_(capacity), worker_([this] { work(); }) {}

JobQueue::~JobQueue() { stop(); }

bool JobQueue::try_submit(Job job, CancelFlag cancel) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::erase_if(waiting_, [](const Entry& e) { return e.cancel->load(); });
    if (stopping_ || waiting_.size() >= capacity_) return false;
    waiting_.push_back({std::move(job), std::move(cancel)});
  }
  wake_.notify_one();
  return true;
}

size_t JobQueue::waiting() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return waiting_.size();
}

void JobQueue::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    for (Entry& e : waiting_) e.cancel->store(true);
    if (running_) running_->store(true);
  }
  wake_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void JobQueue::work() {
  for (;;) {
    Entry entry;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !waiting_.empty(); });
      if (waiting_.empty()) return;  // stopping, and nothing left to tell
      entry = std::move(waiting_.front());
      waiting_.pop_front();
      running_ = entry.cancel;
    }
    const CancelFlag cancel = entry.cancel;
    try {
      entry.job([cancel] { return cancel->load(); });
    } catch (...) {
      // Jobs report their own errors to their owners; one that escapes must not end the worker.
    }
    std::lock_guard<std::mutex> lock(mutex_);
    running_.reset();
  }
}

}  // namespace pconv
