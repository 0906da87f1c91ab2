#pragma once
// N ranks as threads of the test process: a Communicator per thread over one shared meeting
// point, so distributed code (synchronised BatchNorm, the trainer's agreement, averaging and
// stop logic) is tested in every build, with or without MPI. Reductions add the ranks'
// values in rank order in double, so every rank gets the same bits, as with MPI.
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/distributed/communicator.h"

namespace pconv::testing {

class ThreadRanks {
 public:
  explicit ThreadRanks(int size);
  ~ThreadRanks();
  int size() const { return size_; }

  // Runs body(rank's communicator) on `size` threads and waits for all. An exception on one
  // rank makes the others' next collective throw "another rank failed" instead of waiting
  // forever. Returns each rank's exception (null when it finished normally).
  std::vector<std::exception_ptr> run(const std::function<void(Communicator&)>& body);

 private:
  class Rank;
  friend class Rank;
  // Every rank deposits `mine`, waits for all, and gets all deposits in rank order.
  std::vector<std::vector<double>> exchange(int rank, std::vector<double> mine);
  std::vector<std::string> exchange_bytes(int rank, std::string mine);
  void fail();  // wakes every waiting rank with an error
  template <typename T>
  std::vector<T> meet(std::vector<T>& slots, std::vector<T>& result, int rank, T mine);

  int size_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t round_ = 0;
  bool failed_ = false;
  int finished_ = 0;  // ranks whose body returned
  std::vector<std::vector<double>> values_, values_result_;
  std::vector<std::string> bytes_, bytes_result_;
  std::vector<std::unique_ptr<Rank>> ranks_;
};

}  // namespace pconv::testing
