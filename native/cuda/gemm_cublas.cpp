// gemm_cublas.cpp: row-major GEMM on column-major cuBLAS, and Linear layers.
//
// cuBLAS is column-major; a row-major (M, N) matrix is the column-major
// (N, M) matrix of its transpose, so C = op(A) op(B) in row-major is
// C^T = op(B)^T op(A)^T in column-major: the call swaps A and B (and M and N)
// and keeps the transpose flags. cublasGemmEx with fp32 compute serves both
// storage types. cuBLASLt (epilogue-fused bias, GELU/SwiGLU) is the next step
// once a profile shows the bias kernels matter.
#include "gemm_cublas.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "cuda_check.h"
#include "ops_linear.cuh"

#define FW_CUBLAS_CHECK(call)                                                                          \
  do {                                                                                                 \
    cublasStatus_t fw_cublas_st_ = (call);                                                             \
    if (fw_cublas_st_ != CUBLAS_STATUS_SUCCESS) {                                                      \
      ::fw::throw_error(::fw::ErrorKind::kInternal, __FILE__, __LINE__,                                \
                        std::string(#call) + " failed: " + cublasGetStatusString(fw_cublas_st_),       \
                        "check the shapes and leading dimensions passed to fw::cuda::gemm");           \
    }                                                                                                  \
  } while (0)

namespace fw {
namespace cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // what cuBLAS recommends for Hopper

template <typename T>
constexpr cudaDataType_t data_type();
template <>
constexpr cudaDataType_t data_type<float>() { return CUDA_R_32F; }
template <>
constexpr cudaDataType_t data_type<__nv_bfloat16>() { return CUDA_R_16BF; }
template <>
constexpr cudaDataType_t data_type<__half>() { return CUDA_R_16F; }

cublasHandle_t h(Blas& b) { return static_cast<cublasHandle_t>(b.handle()); }

}  // namespace

Blas::Blas() {
  cublasHandle_t hd = nullptr;
  FW_CUBLAS_CHECK(cublasCreate(&hd));
  handle_ = hd;
  FW_CUDA_CHECK(cudaMalloc(&workspace_, kWorkspaceBytes));
  FW_CUBLAS_CHECK(cublasSetWorkspace(hd, workspace_, kWorkspaceBytes));
}

void Blas::bind(cudaStream_t stream) {
  if (bound_once_ && stream == bound_) return;
  cublasHandle_t hd = static_cast<cublasHandle_t>(handle_);
  FW_CUBLAS_CHECK(cublasSetStream(hd, stream));
  FW_CUBLAS_CHECK(cublasSetWorkspace(hd, workspace_, kWorkspaceBytes));  // setStream dropped it
  bound_ = stream;
  bound_once_ = true;
}

Blas::~Blas() {
  if (handle_) cublasDestroy(static_cast<cublasHandle_t>(handle_));
  if (workspace_) cudaFree(workspace_);
}

template <typename T>
void gemm(Blas& blas, bool ta, bool tb, int M, int N, int K, float alpha, const T* A, int lda, const T* B, int ldb,
          float beta, T* C, int ldc, cudaStream_t stream) {
  FW_CHECK(M >= 0 && N >= 0 && K >= 0, kInvalidArgument, "gemm: negative shape " << M << "x" << N << "x" << K);
  if (M == 0 || N == 0) return;
  blas.bind(stream);
  const cublasComputeType_t compute =
      (std::is_same<T, float>::value && blas.allow_tf32) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  FW_CUBLAS_CHECK(cublasGemmEx(h(blas), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                               &alpha, B, data_type<T>(), ldb, A, data_type<T>(), lda, &beta, C, data_type<T>(), ldc,
                               compute, CUBLAS_GEMM_DEFAULT));
}

template <typename T>
void gemm_strided_batched(Blas& blas, bool ta, bool tb, int M, int N, int K, float alpha, const T* A, int lda,
                          long long strideA, const T* B, int ldb, long long strideB, float beta, T* C, int ldc,
                          long long strideC, int batch, cudaStream_t stream) {
  FW_CHECK(M >= 0 && N >= 0 && K >= 0 && batch >= 0, kInvalidArgument,
           "gemm_strided_batched: negative shape " << M << "x" << N << "x" << K << " x" << batch);
  if (M == 0 || N == 0 || batch == 0) return;
  blas.bind(stream);
  const cublasComputeType_t compute =
      (std::is_same<T, float>::value && blas.allow_tf32) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  // row-major C = A B is column-major C^T = B^T A^T, as in gemm()
  FW_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h(blas), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                             N, M, K, &alpha, B, data_type<T>(), ldb, strideB, A, data_type<T>(),
                                             lda, strideA, &beta, C, data_type<T>(), ldc, strideC, batch, compute,
                                             CUBLAS_GEMM_DEFAULT));
}

template <typename T>
void linear_forward_group(Blas& blas, T* out, const T* inp, const T* w, int G, int N, int IC, int OC,
                          cudaStream_t stream) {
  gemm_strided_batched<T>(blas, false, true, N, OC, IC, 1.0f, inp, IC, 0, w, IC, (long long)OC * IC, 0.0f, out, OC,
                          (long long)N * OC, G, stream);
}

template <typename T>
void linear_backward_dw_group(Blas& blas, T* dw, const T* dout, const T* inp, int G, int N, int IC, int OC,
                              cudaStream_t stream) {
  gemm_strided_batched<T>(blas, true, false, OC, IC, N, 1.0f, dout, OC, (long long)N * OC, inp, IC, 0, 1.0f, dw, IC,
                          (long long)OC * IC, G, stream);
}

template <typename T>
void linear_forward(Blas& blas, T* out, const T* inp, const T* w, const T* bias, int N, int IC, int OC,
                    cudaStream_t stream) {
  gemm<T>(blas, false, true, N, OC, IC, 1.0f, inp, IC, w, IC, 0.0f, out, OC, stream);
  if (bias) bias_add_forward(out, bias, N, OC, stream);
}

template <typename T>
void linear_backward(Blas& blas, T* dinp, T* dw, T* dbias, const T* dout, const T* inp, const T* w, int N, int IC,
                     int OC, bool accumulate_dinp, cudaStream_t stream) {
  if (dinp) gemm<T>(blas, false, false, N, IC, OC, 1.0f, dout, OC, w, IC, accumulate_dinp ? 1.0f : 0.0f, dinp, IC,
                    stream);
  if (dw) gemm<T>(blas, true, false, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dw, IC, stream);
  if (dbias) bias_backward(dbias, dout, N, OC, stream);
}

#define FW_GEMM_INSTANTIATE(T)                                                                                  \
  template void gemm<T>(Blas&, bool, bool, int, int, int, float, const T*, int, const T*, int, float, T*, int,  \
                        cudaStream_t);                                                                          \
  template void linear_forward<T>(Blas&, T*, const T*, const T*, const T*, int, int, int, cudaStream_t);        \
  template void linear_backward<T>(Blas&, T*, T*, T*, const T*, const T*, const T*, int, int, int, bool,        \
                                   cudaStream_t);                                                               \
  template void gemm_strided_batched<T>(Blas&, bool, bool, int, int, int, float, const T*, int, long long,      \
                                        const T*, int, long long, float, T*, int, long long, int, cudaStream_t); \
  template void linear_forward_group<T>(Blas&, T*, const T*, const T*, int, int, int, int, cudaStream_t);       \
  template void linear_backward_dw_group<T>(Blas&, T*, const T*, const T*, int, int, int, int, cudaStream_t);
FW_GEMM_INSTANTIATE(float)
FW_GEMM_INSTANTIATE(__nv_bfloat16)
FW_GEMM_INSTANTIATE(__half)
#undef FW_GEMM_INSTANTIATE

}  // namespace cuda
}  // namespace fw
