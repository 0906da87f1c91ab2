// The NCCL communicator: gradients that live on the GPU are averaged with ncclAllReduce
// (ncclAvg) on the CUDA backend's stream, so they never cross host memory; the small host
// reductions (BatchNorm statistics, losses, stop flags), the broadcasts and the launch go
// through the MPI communicator it wraps, which also carries NCCL's unique id to every rank.
// Built only when CUDA, NCCL and MPI are found (cuda/cuda.cmake, core/distributed/distributed.cmake).
// CI compiles it; it runs only on machines with two GPUs (scripts/gpu-check, docs/gpu.md).
#include <nccl.h>

#include <cstdlib>
#include <cstring>

#include "core/distributed/communicator.h"
#include "cuda/check.h"
#include "cuda/cuda_backend.h"

#define NCCL_CHECK(call)                                                                   \
  do {                                                                                     \
    ncclResult_t pconv_status_ = (call);                                                   \
    if (pconv_status_ != ncclSuccess)                                                      \
      ::pconv::throw_cuda_error("NCCL", #call, ncclGetErrorString(pconv_status_), __FILE__, \
                                __LINE__);                                                 \
  } while (0)

namespace pconv {

namespace {

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(std::unique_ptr<Communicator> host) : host_(std::move(host)) {
    ncclUniqueId id;
    std::memset(&id, 0, sizeof id);
    std::string bytes;
    // Each rank's GPU (its local rank, cuda_backend.cpp) and rank 0's id; agreed first, so a
    // rank without a usable GPU stops every rank instead of leaving them in ncclCommInitRank.
    agree_on(*host_, [&] {
      stream_ = static_cast<CudaBackend&>(backend(Device::CUDA)).stream();
      if (host_->rank() == 0) {
        NCCL_CHECK(ncclGetUniqueId(&id));
        bytes.assign(reinterpret_cast<const char*>(&id), sizeof id);
      }
    });
    host_->broadcast(bytes, 0);
    std::memcpy(&id, bytes.data(), sizeof id);
    NCCL_CHECK(ncclCommInitRank(&comm_, host_->size(), id, host_->rank()));
  }
  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);
  }

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  std::string describe() const override {
    int version = 0;
    ncclGetVersion(&version);
    return host_->describe() + ", NCCL " + std::to_string(version) + " for GPU tensors";
  }

  void allreduce_sum(double* data, size_t count) override { host_->allreduce_sum(data, count); }
  void broadcast(std::string& bytes, int root) override { host_->broadcast(bytes, root); }

  // GPU tensors in one NCCL group (NCCL fuses the small ones), queued on the backend's stream
  // so the next kernels (Adam) wait for it without a host synchronisation.
  void allreduce_mean(const std::vector<Tensor*>& tensors) override {
    std::vector<Tensor*> on_host;
    NCCL_CHECK(ncclGroupStart());
    for (Tensor* t : tensors) {
      if (t->device() != Device::CUDA) {
        on_host.push_back(t);
        continue;
      }
      if (t->dtype() != DType::F32 && t->dtype() != DType::F64)
        throw Error(std::string("NCCL allreduce_mean: tensors must be f32 or f64, got ") + dtype_name(t->dtype()));
      const ncclDataType_t type = t->dtype() == DType::F32 ? ncclFloat32 : ncclFloat64;
      NCCL_CHECK(ncclAllReduce(t->raw_data(), t->raw_data(), size_t(t->numel()), type, ncclAvg, comm_, stream_));
    }
    NCCL_CHECK(ncclGroupEnd());
    if (!on_host.empty()) host_->allreduce_mean(on_host);
  }

  [[noreturn]] void abort(int code) override {
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
    host_->abort(code);
    std::_Exit(code);  // not reached: for the compiler, which cannot see through the virtual call
  }

 private:
  std::unique_ptr<Communicator> host_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator> host) {
  return std::make_unique<NcclCommunicator>(std::move(host));
}

}  // namespace pconv
