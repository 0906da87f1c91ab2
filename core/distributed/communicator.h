#pragma once
// Data-parallel training across processes (ranks): the one small interface the training loop
// talks to, whatever carries the bytes. Three implementations:
//   single process   rank 0 of 1; every call returns at once (this file)
//   MPI              launched by mpirun; sums on the CPU with MPI_Allreduce (mpi_communicator.cpp)
//   NCCL             MPI for the launch and the host, NCCL all-reduce for GPU tensors (cuda/)
// Every rank must make the same calls in the same order: each one is a collective.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace pconv {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "MPI, 4 ranks" and the like, for the progress line.
  virtual std::string describe() const = 0;

  // Sums `count` doubles in place over the ranks; every rank gets the same bits.
  virtual void allreduce_sum(double* data, size_t count) = 0;
  // Replaces each tensor (f32 or f64, contiguous, any device) by its mean over the ranks;
  // every rank gets the same bits. The gradients of one training step, in one call.
  virtual void allreduce_mean(const std::vector<Tensor*>& tensors) = 0;
  // Rank `root`'s bytes (and length) to every rank.
  virtual void broadcast(std::string& bytes, int root) = 0;
  // Ends every rank of the job with `code`, now: for an error on one rank while the others
  // wait in a collective for it (they would wait forever). Does not return.
  [[noreturn]] virtual void abort(int code) = 0;
};

// Rank 0 of 1.
class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string describe() const override { return "1 process"; }
  void allreduce_sum(double*, size_t) override {}
  void allreduce_mean(const std::vector<Tensor*>&) override {}
  void broadcast(std::string&, int) override {}
  [[noreturn]] void abort(int code) override;
};
Communicator& single_process();

// An error every rank raised together, after agreeing on it (see agree()): the same message
// everywhere, so only rank 0 reports it and every rank exits normally with an error status.
struct CollectiveError : Error {
  CollectiveError(const std::string& message, int rank) : Error(message), rank(rank) {}
  int rank;  // of the process holding this exception
};

// ---- the launcher (environment only; nothing here starts MPI)
// Number of ranks mpirun (Open MPI, MPICH/Hydra) or a PMIx launcher started, 0 when the
// process was not started by one.
int launched_world_size();
// This process's index among the ranks on its machine (0 when not launched): which GPU it uses.
int launched_local_rank();
// Ranks on this machine (1 when not launched or not said): they share its cores and memory.
int launched_local_size();
bool built_with_mpi();
bool built_with_nccl();

// The communicator of this process: single process unless launched by mpirun; MPI when
// launched (also with -np 1); NCCL for CUDA tensors when `device` is CUDA, there are several
// ranks, and pconv was built with NCCL. Throws when launched with several ranks without MPI
// built in. Only the first call initialises MPI.
std::unique_ptr<Communicator> make_communicator(Device device);

// ---- collective helpers
// Every rank passes its outcome of the same phase (null: it went well). If any rank failed,
// every rank throws the same CollectiveError: the lowest failing rank's message, prefixed
// with "rank r: " when it is not rank 0.
void agree(Communicator& comm, std::exception_ptr outcome);
// Runs `body` on every rank: an error there is turned into agree()'s CollectiveError.
template <typename F>
void agree_on(Communicator& comm, F&& body) {
  std::exception_ptr outcome;
  try {
    body();
  } catch (...) {
    outcome = std::current_exception();
  }
  agree(comm, outcome);
}
// True on every rank when `flag` is true on any rank.
bool any_rank(Communicator& comm, bool flag);
// The ranks of `comm` whose `fingerprint` differs from rank 0's (empty when all agree); the
// same list on every rank.
std::vector<int> ranks_differing_from_root(Communicator& comm, uint64_t fingerprint);

// A 64-bit hash of bytes (not cryptographic): to check that ranks hold the same state.
uint64_t hash_bytes(const void* data, size_t bytes, uint64_t seed);
// The hash of tensors' shapes and values (any device), in the given order.
uint64_t hash_tensors(const std::vector<const Tensor*>& tensors, uint64_t seed);

}  // namespace pconv
