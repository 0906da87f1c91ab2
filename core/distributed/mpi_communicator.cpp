// The MPI communicator: MPI_COMM_WORLD of the processes mpirun started. The only file that
// includes mpi.h (cuda/nccl_communicator.cpp bootstraps NCCL through this one's Communicator
// interface and never calls MPI itself).
//
// Errors: MPI's default handler (MPI_ERRORS_ARE_FATAL) ends the whole job on a failed call, and
// mpirun ends the job when a rank dies; abort() is for our own errors on one rank.
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/backend.h"
#include "core/distributed/communicator.h"

namespace pconv {

namespace {

// MPI counts are ints: send long buffers in slices of at most 2^30 elements.
constexpr size_t kMaxCount = size_t(1) << 30;

void allreduce_in_place(void* data, size_t count, MPI_Datatype type, size_t element_bytes) {
  auto* bytes = static_cast<char*>(data);
  for (size_t done = 0; done < count;) {
    const size_t n = std::min(kMaxCount, count - done);
    MPI_Allreduce(MPI_IN_PLACE, bytes + done * element_bytes, int(n), type, MPI_SUM, MPI_COMM_WORLD);
    done += n;
  }
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (finalized) throw Error("MPI: already finalised in this process; it cannot start again");
    if (!initialized) {
      // Only the main thread calls MPI (the data loader's threads never do).
      int provided = 0;
      if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        throw Error("MPI: MPI_Init_thread failed");
      // A library that only gives MPI_THREAD_SINGLE may not be called from a process with
      // other threads at all (the OpenMP pool, the data loader): refused, not hoped for.
      if (provided < MPI_THREAD_FUNNELED) {
        MPI_Finalize();
        throw Error("MPI: the library provides thread level " + std::to_string(provided) +
                    ", pconv needs MPI_THREAD_FUNNELED (" + std::to_string(MPI_THREAD_FUNNELED) +
                    "): use an MPI built with thread support");
      }
      owns_mpi_ = true;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_mpi_ && !finalized) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override {
    return "MPI, " + std::to_string(size_) + (size_ == 1 ? " rank" : " ranks");
  }

  void allreduce_sum(double* data, size_t count) override {
    if (size_ > 1) allreduce_in_place(data, count, MPI_DOUBLE, sizeof(double));
  }

  // One MPI_Allreduce over all tensors packed into one host buffer per dtype (one large
  // message rather than ~100 small ones: bandwidth-bound algorithms, one latency), then the
  // mean written back. Each slice is reduced by MPI in a fixed order and the result sent to
  // all, so every rank gets the same bits.
  void allreduce_mean(const std::vector<Tensor*>& tensors) override {
    if (size_ == 1) return;
    reduce_dtype<float>(tensors, DType::F32, MPI_FLOAT);
    reduce_dtype<double>(tensors, DType::F64, MPI_DOUBLE);
  }

  void broadcast(std::string& bytes, int root) override {
    if (size_ == 1) return;
    unsigned long long n = bytes.size();
    MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, root, MPI_COMM_WORLD);
    bytes.resize(size_t(n));
    for (size_t done = 0; done < bytes.size();) {
      const size_t k = std::min(kMaxCount, bytes.size() - done);
      MPI_Bcast(bytes.data() + done, int(k), MPI_CHAR, root, MPI_COMM_WORLD);
      done += k;
    }
  }

  [[noreturn]] void abort(int code) override {
    std::fflush(nullptr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; this is for the compiler
  }

 private:
  template <typename T>
  void reduce_dtype(const std::vector<Tensor*>& tensors, DType dtype, MPI_Datatype type) {
    std::vector<Tensor*> mine;
    size_t total = 0;
    for (Tensor* t : tensors) {
      if (!t || !t->defined()) throw Error("MPI allreduce_mean: an undefined tensor");
      if (t->dtype() != DType::F32 && t->dtype() != DType::F64)
        throw Error(std::string("MPI allreduce_mean: tensors must be f32 or f64, got ") + dtype_name(t->dtype()));
      if (t->dtype() == dtype) mine.push_back(t), total += size_t(t->numel());
    }
    if (mine.empty()) return;
    buffer_.resize(total * sizeof(T));
    T* packed = reinterpret_cast<T*>(buffer_.data());
    size_t offset = 0;
    for (Tensor* t : mine) {
      backend_of(*t).copy_to_host(packed + offset, t->raw_data(), t->nbytes());
      offset += size_t(t->numel());
    }
    allreduce_in_place(packed, total, type, sizeof(T));
    const T scale = T(1) / T(size_);
    for (size_t i = 0; i < total; ++i) packed[i] *= scale;
    offset = 0;
    for (Tensor* t : mine) {
      backend_of(*t).copy_from_host(t->raw_data(), packed + offset, t->nbytes());
      offset += size_t(t->numel());
    }
  }

  int rank_ = 0, size_ = 1;
  bool owns_mpi_ = false;
  std::vector<char> buffer_;  // kept between steps: the gradients' size every time
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator() { return std::make_unique<MpiCommunicator>(); }

}  // namespace pconv
