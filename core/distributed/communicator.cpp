// The single-process communicator, the launcher's environment, the factory and the collective
// helpers. See core/distributed/communicator.h; the MPI implementation is beside it
// (mpi_communicator.cpp), the NCCL one in cuda/.
#include "core/distributed/communicator.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

namespace pconv {

#ifdef PCONV_HAS_MPI
std::unique_ptr<Communicator> make_mpi_communicator();  // core/distributed/mpi_communicator.cpp
#endif
#ifdef PCONV_HAS_NCCL
// cuda/nccl_communicator.cpp: GPU tensors over NCCL, the rest (and the bootstrap) over `host`.
std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator> host);
#endif

void SingleProcess::abort(int code) {
  std::fflush(nullptr);
  std::_Exit(code);
}

Communicator& single_process() {
  static SingleProcess instance;
  return instance;
}

namespace {

// The first of `names` set to a non-negative integer, or -1.
int env_int(std::initializer_list<const char*> names) {
  for (const char* name : names) {
    const char* v = std::getenv(name);
    if (!v || !*v) continue;
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    if (*end == '\0' && n >= 0 && n < (1L << 30)) return int(n);
  }
  return -1;
}

}  // namespace

int launched_world_size() {
  // Open MPI's mpirun, then MPICH/Hydra (and Slurm's PMI); a PMIx launcher that says no size
  // still means "launched".
  const int n = env_int({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"});
  if (n >= 0) return n;
  return std::getenv("PMIX_RANK") ? 1 : 0;
}

int launched_local_rank() {
  const int r = env_int({"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK", "SLURM_LOCALID"});
  return r < 0 ? 0 : r;
}

int launched_local_size() {
  const int n = env_int({"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"});
  return n < 1 ? 1 : n;
}

bool built_with_mpi() {
#ifdef PCONV_HAS_MPI
  return true;
#else
  return false;
#endif
}

bool built_with_nccl() {
#ifdef PCONV_HAS_NCCL
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Communicator> make_communicator(Device device) {
  const int launched = launched_world_size();
  if (launched == 0) return std::make_unique<SingleProcess>();
#ifdef PCONV_HAS_MPI
  std::unique_ptr<Communicator> mpi = make_mpi_communicator();
#ifdef PCONV_HAS_NCCL
  if (device == Device::CUDA && mpi->size() > 1) return make_nccl_communicator(std::move(mpi));
#else
  (void)device;  // GPU tensors go through host memory and MPI
#endif
  return mpi;
#else
  (void)device;
  if (launched > 1)
    throw Error("started by mpirun as one of " + std::to_string(launched) +
                " ranks, but pconv was built without MPI: install libopenmpi-dev and rebuild (PCONV_MPI=AUTO or ON)");
  return std::make_unique<SingleProcess>();
#endif
}

// ---- collective helpers

void agree(Communicator& comm, std::exception_ptr outcome) {
  if (comm.size() == 1) {
    if (outcome) std::rethrow_exception(outcome);
    return;
  }
  std::string message;
  if (outcome) {
    try {
      std::rethrow_exception(outcome);
    } catch (const std::exception& e) {
      message = e.what();
    } catch (...) {
      message = "unknown error";
    }
  }
  // One slot per rank: who failed. The lowest failing rank's message goes to everyone.
  std::vector<double> failed(size_t(comm.size()), 0.0);
  failed[size_t(comm.rank())] = outcome ? 1.0 : 0.0;
  comm.allreduce_sum(failed.data(), failed.size());
  int first = -1;
  for (size_t r = 0; r < failed.size() && first < 0; ++r)
    if (failed[r] > 0) first = int(r);
  if (first < 0) return;
  comm.broadcast(message, first);
  throw CollectiveError(first == 0 ? message : "rank " + std::to_string(first) + ": " + message, comm.rank());
}

bool any_rank(Communicator& comm, bool flag) {
  double v = flag ? 1.0 : 0.0;
  comm.allreduce_sum(&v, 1);
  return v > 0;
}

std::vector<int> ranks_differing_from_root(Communicator& comm, uint64_t fingerprint) {
  std::string root(sizeof fingerprint, '\0');
  std::memcpy(root.data(), &fingerprint, sizeof fingerprint);
  comm.broadcast(root, 0);
  uint64_t root_value = 0;
  if (root.size() == sizeof root_value) std::memcpy(&root_value, root.data(), sizeof root_value);
  std::vector<double> differs(size_t(comm.size()), 0.0);
  differs[size_t(comm.rank())] = root_value == fingerprint ? 0.0 : 1.0;
  comm.allreduce_sum(differs.data(), differs.size());
  std::vector<int> out;
  for (size_t r = 0; r < differs.size(); ++r)
    if (differs[r] > 0) out.push_back(int(r));
  return out;
}

namespace {
uint64_t mix64(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
}  // namespace

uint64_t hash_bytes(const void* data, size_t bytes, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  // Four independent lanes over 8-byte words keep the multiplies pipelined (GB/s).
  uint64_t lane[4] = {mix64(seed + 1), mix64(seed + 2), mix64(seed + 3), mix64(seed + 4)};
  size_t i = 0;
  for (; i + 32 <= bytes; i += 32)
    for (int k = 0; k < 4; ++k) {
      uint64_t w;
      std::memcpy(&w, p + i + 8 * size_t(k), 8);
      lane[k] = (lane[k] ^ w) * 0x9e3779b97f4a7c15ull;
      lane[k] ^= lane[k] >> 29;
    }
  uint64_t h = mix64(seed ^ bytes);
  for (uint64_t l : lane) h = mix64(h ^ l);
  for (; i < bytes; ++i) h = mix64(h ^ p[i]);
  return h;
}

uint64_t hash_tensors(const std::vector<const Tensor*>& tensors, uint64_t seed) {
  uint64_t h = mix64(seed);
  for (const Tensor* t : tensors) {
    if (!t || !t->defined()) {
      h = mix64(h ^ 0x756e646566ull);  // "undef"
      continue;
    }
    for (int64_t d : t->shape()) h = mix64(h ^ uint64_t(d));
    const Tensor host = t->device() == Device::CPU ? *t : t->detach().to(Device::CPU);
    h = hash_bytes(host.raw_data(), host.nbytes(), h);
  }
  return h;
}

}  // namespace pconv
