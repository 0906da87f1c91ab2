#pragma once
// The CUDA backend: one device (the current one), one stream that every kernel, copy,
// cuBLAS and cuDNN call is queued on, and the caching allocator (cuda/allocator.h). Its
// methods are defined across cuda/*.cu and cuda/*.cpp, one file per kernel family, like
// the CPU backend's. Only files under cuda/ include this header.
#include <cuda_runtime.h>

#include "core/backend.h"

struct cublasContext;  // cublasHandle_t, defined in cublas_gemm.cpp's headers
struct cudnnContext;   // cudnnHandle_t, used only in cudnn_conv.cpp

namespace pconv {

class CudaBackend final : public Backend {
 public:
  CudaBackend();  // throws Error when the device, cuBLAS or cuDNN cannot be set up
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  Device device() const override { return Device::CUDA; }
  void* allocate(size_t bytes) override;
  void deallocate(void* ptr, size_t bytes) override;
  void copy_from_host(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void synchronize() override;

  void copy(const Tensor& src, Tensor& dst) override;
  void fill(Tensor& t, double value) override;
  void fill_uniform(Tensor& t, double low, double high, uint64_t seed, uint64_t offset) override;
  void fill_normal(Tensor& t, double mean, double stddev, uint64_t seed, uint64_t offset) override;

  void unary(UnaryOp op, const Tensor& x, Tensor& y, double alpha) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& y) override;
  void pointwise_grad(PointwiseGrad op, const Tensor& x, const Tensor& gy, Tensor& gx,
                      double alpha) override;
  void sum_to(const Tensor& x, Tensor& y) override;
  void gemm(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, double alpha,
            double beta) override;

  void conv2d_forward(const Tensor& x, const Tensor& w, Tensor& y, const Conv2dParams& p) override;
  void conv2d_backward_data(const Tensor& gy, const Tensor& w, Tensor& gx,
                            const Conv2dParams& p) override;
  void conv2d_backward_weight(const Tensor& gy, const Tensor& x, Tensor& gw,
                              const Conv2dParams& p) override;

  void mask_apply(const Tensor& x, const Mask& mask, Tensor& y) override;
  void pconv_count(const Mask& mask, int64_t kh, int64_t kw, const Conv2dParams& p,
                   Tensor& count) override;
  void pconv_epilogue(Tensor& y, const Tensor& count, const Tensor& bias, double window,
                      Tensor& new_mask) override;
  void pconv_grad_scale(const Tensor& gy, const Tensor& count, double window, Tensor& g) override;

  void batch_norm_stats(const Tensor& x, Tensor& mean, Tensor& var) override;
  void batch_norm_apply(const Tensor& x, const Tensor& mean, const Tensor& var, const Tensor& gamma,
                        const Tensor& beta, double eps, Tensor& y) override;
  void batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& mean, const Tensor& var,
                           const Tensor& gamma, double eps, bool batch_stats, Tensor& gx,
                           Tensor& ggamma, Tensor& gbeta) override;

  void upsample_nearest2x(const Tensor& x, Tensor& y) override;
  void upsample_nearest2x_backward(const Tensor& gy, Tensor& gx) override;
  void max_pool2x2(const Tensor& x, Tensor& y) override;
  void max_pool2x2_backward(const Tensor& x, const Tensor& gy, Tensor& gx) override;

  void copy_into_slice(const Tensor& x, Tensor& y, int64_t dim, int64_t start) override;
  void copy_from_slice(const Tensor& x, int64_t dim, int64_t start, Tensor& y) override;

  void adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                 const AdamParams& p) override;
  void adam_step_all(const std::vector<AdamSlot>& slots, const AdamParams& p) override;

  // The CPU's solver on the device, bit for bit (cuda/harmonic_fill.cu).
  void harmonic_fill(const Tensor& image, const Tensor& mask, Tensor& out,
                     const HarmonicFillParams& p) override;

  cudaStream_t stream() const { return stream_; }
  // f32 GEMM and convolution may use TF32 tensor cores only when PCONV_TF32=1: by default
  // the GPU matches the CPU to about 1e-6 relative.
  bool allow_tf32() const { return allow_tf32_; }

 private:
  void run_probe_kernel();  // cuda/fill.cu
  cudaStream_t stream_ = nullptr;
  cublasContext* cublas_ = nullptr;
  cudnnContext* cudnn_ = nullptr;
  bool allow_tf32_ = false;
};

// cuBLAS and cuDNN handles bound to `stream`; defined next to their only users.
cublasContext* create_cublas_handle(cudaStream_t stream, bool allow_tf32);
void destroy_cublas_handle(cublasContext* h) noexcept;
cudnnContext* create_cudnn_handle(cudaStream_t stream);
void destroy_cudnn_handle(cudnnContext* h) noexcept;

// nullptr with the reason when no usable device is present (core/backend.cpp asks once).
Backend* cuda_backend_or_null(std::string& why_not);

}  // namespace pconv
