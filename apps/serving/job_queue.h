#pragma once
// A bounded queue of jobs run one at a time by one worker thread: the server's inference
// jobs (the model is not shared between threads, and one pass already uses every core). A
// full queue refuses new jobs at once (the server answers 503) instead of letting requests
// pile up. Each job has a cancellation flag, set by its owner when it gives up waiting, or by
// stop(); a job asks `cancelled()` before starting and between steps, and returns early.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace pconv {

class JobQueue {
 public:
  using Cancelled = std::function<bool()>;
  using Job = std::function<void(const Cancelled& cancelled)>;
  using CancelFlag = std::shared_ptr<std::atomic<bool>>;

  // At most `capacity` jobs wait while one runs.
  explicit JobQueue(size_t capacity);
  ~JobQueue();  // stop()
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;

  // Queues `job`; false when `capacity` jobs are waiting or the queue has stopped. Waiting
  // jobs whose flag is set are dropped first (nobody waits for them any more). A job must
  // not throw; one that does is ignored.
  bool try_submit(Job job, CancelFlag cancel);

  size_t waiting() const;
  size_t capacity() const { return capacity_; }
  // Sets every flag (the running job's and the waiting ones'), refuses new jobs, lets the
  // worker run what is left (cancelled jobs return at once), and joins it. Idempotent.
  void stop();

 private:
  void work();

  struct Entry {
    Job job;
    CancelFlag cancel;
  };
  const size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Entry> waiting_;
  CancelFlag running_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace pconv
