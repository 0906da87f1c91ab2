// sum_to: y (x's rank, some dims 1) = x summed over the dims where y has 1.
#include "cuda/reduce.cuh"

namespace pconv {

namespace {

constexpr int kMaxRank = 8;

// x's dims split into those y keeps and those summed away (each merged where contiguous);
// sizes and element strides into x, outermost first.
struct SumToPlan {
  int kept_rank = 0, summed_rank = 0;
  int64_t kept_size[kMaxRank], kept_stride[kMaxRank];
  int64_t summed_size[kMaxRank], summed_stride[kMaxRank];
};

__device__ int64_t decode(int64_t i, int rank, const int64_t* size, const int64_t* stride) {
  int64_t off = 0;
  for (int d = rank - 1; d >= 0; --d) {
    off += (i % size[d]) * stride[d];
    i /= size[d];
  }
  return off;
}

template <typename T>
struct SumToTerm {
  const T* x;
  SumToPlan plan;
  __device__ Sums<1> operator()(int64_t o, int64_t r) const {
    const int64_t off = decode(o, plan.kept_rank, plan.kept_size, plan.kept_stride) +
                        decode(r, plan.summed_rank, plan.summed_size, plan.summed_stride);
    return Sums<1>{{double(x[off])}};
  }
};

template <typename T>
struct StoreSum {
  T* y;
  __device__ void operator()(int64_t o, const Sums<1>& s) const { y[o] = T(s.v[0]); }
};

SumToPlan make_plan(const Shape& x, const Shape& y) {
  if (x.size() != y.size())
    throw Error("sum_to: x " + shape_str(x) + " and y " + shape_str(y) + " differ in rank");
  std::vector<int64_t> stride(x.size());
  int64_t running = 1;
  for (size_t d = x.size(); d-- > 0;) {
    stride[d] = running;
    running *= x[d];
  }
  SumToPlan p;
  int last = -1;  // 0 kept, 1 summed: the kind of the previous non-trivial dim
  for (size_t d = 0; d < x.size(); ++d) {
    if (y[d] != 1 && y[d] != x[d])
      throw Error("sum_to: y " + shape_str(y) + " is not x " + shape_str(x) +
                  " with some dims reduced to 1");
    if (x[d] == 1) continue;
    const int kind = y[d] == 1 ? 1 : 0;
    int& rank = kind ? p.summed_rank : p.kept_rank;
    int64_t* size = kind ? p.summed_size : p.kept_size;
    int64_t* st = kind ? p.summed_stride : p.kept_stride;
    if (kind == last) {  // contiguous with the previous dim of the same kind: merge
      size[rank - 1] *= x[d];
      st[rank - 1] = stride[d];
    } else {
      if (rank == kMaxRank)
        throw Error("sum_to: x " + shape_str(x) + " has too many alternating dims");
      size[rank] = x[d];
      st[rank] = stride[d];
      ++rank;
    }
    last = kind;
  }
  return p;
}

}  // namespace

void CudaBackend::sum_to(const Tensor& x, Tensor& y) {
  const SumToPlan plan = make_plan(x.shape(), y.shape());
  if (y.numel() == 0) return;
  if (x.numel() == y.numel()) {
    CUDA_CHECK(cudaMemcpyAsync(y.raw_data(), x.raw_data(), x.nbytes(), cudaMemcpyDeviceToDevice,
                               stream_));
    return;
  }
  const int64_t length = x.numel() / y.numel();
  cuda_dispatch_float("sum_to", x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    segmented_sum<1>(SumToTerm<T>{x.data<T>(), plan}, StoreSum<T>{y.data<T>()}, y.numel(), length,
                     stream_, "sum_to " + shapes_of(x) + " -> " + shapes_of(y));
  });
}

}  // namespace pconv
