#include "tests/thread_ranks.h"

#include <thread>

#include "core/backend.h"

namespace pconv::testing {

class ThreadRanks::Rank final : public Communicator {
 public:
  Rank(ThreadRanks& group, int rank) : group_(group), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return group_.size_; }
  std::string describe() const override { return std::to_string(group_.size_) + " threads"; }

  void allreduce_sum(double* data, size_t count) override {
    const auto all = group_.exchange(rank_, std::vector<double>(data, data + count));
    for (size_t i = 0; i < count; ++i) {
      double s = 0;
      for (const auto& v : all) s += v.at(i);
      data[i] = s;
    }
  }

  void allreduce_mean(const std::vector<Tensor*>& tensors) override {
    std::vector<double> mine;
    for (const Tensor* t : tensors) {
      const auto v = t->to_double_vector();
      mine.insert(mine.end(), v.begin(), v.end());
    }
    const size_t n = mine.size();
    allreduce_sum(mine.data(), n);
    size_t offset = 0;
    for (Tensor* t : tensors) {
      std::vector<double> mean(mine.begin() + std::ptrdiff_t(offset), mine.begin() + std::ptrdiff_t(offset) + t->numel());
      for (double& x : mean) x /= double(group_.size_);
      offset += size_t(t->numel());
      Tensor values = Tensor::from_vector(mean, t->shape()).to(t->dtype()).to(t->device());
      backend_of(*t).copy(values, *t);
    }
  }

  void broadcast(std::string& bytes, int root) override { bytes = group_.exchange_bytes(rank_, bytes).at(size_t(root)); }

  [[noreturn]] void abort(int code) override {
    group_.fail();
    throw Error("rank " + std::to_string(rank_) + " aborted every rank with code " + std::to_string(code));
  }

 private:
  ThreadRanks& group_;
  int rank_;
};

ThreadRanks::ThreadRanks(int size) : size_(size), values_(size_t(size)), bytes_(size_t(size)) {
  for (int r = 0; r < size; ++r) ranks_.push_back(std::make_unique<Rank>(*this, r));
}

ThreadRanks::~ThreadRanks() = default;

// Every rank deposits its part and leaves with all parts of the round in rank order. The
// result is copied by the last rank to arrive and stays valid until all ranks of the round
// have read it (the next round cannot complete before that).
template <typename T>
std::vector<T> ThreadRanks::meet(std::vector<T>& slots, std::vector<T>& result, int rank, T mine) {
  std::unique_lock<std::mutex> lock(mu_);
  auto check = [&] {
    if (failed_) throw Error("another rank failed");
    if (finished_ > 0) throw Error("a rank returned while this one waited in a collective: the ranks made different calls");
  };
  check();
  const int64_t mine_round = round_;
  slots[size_t(rank)] = std::move(mine);
  if (++arrived_ == size_) {
    result = slots;
    arrived_ = 0;
    ++round_;
    cv_.notify_all();
  } else {
    cv_.wait(lock, [&] { return round_ != mine_round || failed_ || finished_ > 0; });
    if (round_ == mine_round) check();
  }
  return result;
}

std::vector<std::vector<double>> ThreadRanks::exchange(int rank, std::vector<double> mine) {
  return meet(values_, values_result_, rank, std::move(mine));
}

std::vector<std::string> ThreadRanks::exchange_bytes(int rank, std::string mine) {
  return meet(bytes_, bytes_result_, rank, std::move(mine));
}

void ThreadRanks::fail() {
  std::lock_guard<std::mutex> lock(mu_);
  failed_ = true;
  cv_.notify_all();
}

std::vector<std::exception_ptr> ThreadRanks::run(const std::function<void(Communicator&)>& body) {
  std::vector<std::exception_ptr> errors(static_cast<size_t>(size_));
  std::vector<std::thread> threads;
  for (int r = 0; r < size_; ++r)
    threads.emplace_back([&, r] {
      try {
        body(*ranks_[size_t(r)]);
        std::lock_guard<std::mutex> lock(mu_);
        ++finished_;
        cv_.notify_all();
      } catch (...) {
        errors[size_t(r)] = std::current_exception();
        fail();
      }
    });
  for (auto& t : threads) t.join();
  return errors;
}

}  // namespace pconv::testing
