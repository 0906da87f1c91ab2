#pragma once
// One checking macro per library. A failing call throws pconv::Error naming the file, the
// line, the call as written and the library's own message; CUDA_CHECK_LAUNCH adds what the
// kernel was doing (op and shapes), built only when the launch failed.
#include <cuda_runtime.h>

#include <string>

namespace pconv {

[[noreturn]] void throw_cuda_error(const char* library, const char* call, const char* message,
                                   const char* file, int line);

}  // namespace pconv

#define CUDA_CHECK(call)                                                                   \
  do {                                                                                     \
    cudaError_t pconv_status_ = (call);                                                    \
    if (pconv_status_ != cudaSuccess)                                                      \
      ::pconv::throw_cuda_error("cuda", #call, cudaGetErrorString(pconv_status_), __FILE__, \
                                __LINE__);                                                 \
  } while (0)

// After a <<<...>>> launch: `what` is a std::string expression such as
// "unary exp on " + shape_str(x.shape()); it is evaluated only on failure.
#define CUDA_CHECK_LAUNCH(what)                                                        \
  do {                                                                                 \
    cudaError_t pconv_status_ = cudaGetLastError();                                    \
    if (pconv_status_ != cudaSuccess)                                                  \
      ::pconv::throw_cuda_error("cuda", std::string(what).c_str(),                     \
                                cudaGetErrorString(pconv_status_), __FILE__, __LINE__); \
  } while (0)

// The two below expand only in files that include cublas_v2.h / cudnn.h.
#define CUBLAS_CHECK(call)                                                                   \
  do {                                                                                       \
    cublasStatus_t pconv_status_ = (call);                                                   \
    if (pconv_status_ != CUBLAS_STATUS_SUCCESS)                                              \
      ::pconv::throw_cuda_error("cuBLAS", #call, cublasGetStatusString(pconv_status_), __FILE__, \
                                __LINE__);                                                   \
  } while (0)

#define CUDNN_CHECK(call)                                                                   \
  do {                                                                                      \
    cudnnStatus_t pconv_status_ = (call);                                                   \
    if (pconv_status_ != CUDNN_STATUS_SUCCESS)                                              \
      ::pconv::throw_cuda_error("cuDNN", #call, cudnnGetErrorString(pconv_status_), __FILE__, \
                                __LINE__);                                                  \
  } while (0)
