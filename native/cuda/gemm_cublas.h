// gemm_cublas.h: row-major GEMM and Linear layers on cuBLAS (the GPU side of
// engine/ops_gemm.h and engine/ops_linear.h). Compiled only when CMake finds
// cuBLAS (CUDA::cublas); the header does not include cuBLAS's.
//
// Storage type T is float, bf16 or fp16; accumulation is always fp32. fp32 mode
// uses true fp32 products (CUBLAS_COMPUTE_32F, no TF32) so the parity tests
// can ask for 1e-4; set Blas::allow_tf32 for speed when that is not needed.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace fw {
namespace cuda {

// One cuBLAS handle plus its workspace; one per device and thread.
class Blas {
 public:
  Blas();   // throws fw::Error when cuBLAS cannot initialise
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;
  void* handle() const { return handle_; }  // cublasHandle_t
  // Points the handle at `stream` (a no-op when it already is) with our
  // workspace: cublasSetStream puts the handle back on cuBLAS's own pool,
  // which may not allocate while a CUDA graph is being captured.
  void bind(cudaStream_t stream);
  bool allow_tf32 = false;

 private:
  void* handle_ = nullptr;
  void* workspace_ = nullptr;
  cudaStream_t bound_ = nullptr;
  bool bound_once_ = false;
};

// C (M, N) = alpha * op(A) (M, K) @ op(B) (K, N) + beta * C, row-major with
// row strides lda/ldb/ldc, op(X) = X^T when the flag is set (fw::gemm's
// convention).
template <typename T>
void gemm(Blas& blas, bool ta, bool tb, int M, int N, int K, float alpha, const T* A, int lda, const T* B, int ldb,
          float beta, T* C, int ldc, cudaStream_t stream);

// out (N, OC) = inp (N, IC) @ w^T + bias; w (OC, IC), bias (OC) or nullptr.
template <typename T>
void linear_forward(Blas& blas, T* out, const T* inp, const T* w, const T* bias, int N, int IC, int OC,
                    cudaStream_t stream);

// batch GEMMs C[i] = alpha * op(A[i]) @ op(B[i]) + beta * C[i], X[i] = X +
// i * strideX (a stride of 0 shares one matrix), in one strided-batched call.
template <typename T>
void gemm_strided_batched(Blas& blas, bool ta, bool tb, int M, int N, int K, float alpha, const T* A, int lda,
                          long long strideA, const T* B, int ldb, long long strideB, float beta, T* C, int ldc,
                          long long strideC, int batch, cudaStream_t stream);

// G projections of one input whose weights lie back to back (w + g * OC *
// IC) and whose outputs do too (out + g * N * OC): out[g] = inp @ w[g]^T, in
// one batched GEMM, so the G problems share the SMs (q/k/v, gate/up). No bias.
template <typename T>
void linear_forward_group(Blas& blas, T* out, const T* inp, const T* w, int G, int N, int IC, int OC,
                          cudaStream_t stream);

// dw[g] (OC, IC) += dout[g]^T @ inp for G projections laid out as above.
template <typename T>
void linear_backward_dw_group(Blas& blas, T* dw, const T* dout, const T* inp, int G, int N, int IC, int OC,
                              cudaStream_t stream);

// dinp (N, IC) = dout @ w (or += when accumulate_dinp); dw (OC, IC) +=
// dout^T @ inp; dbias (OC) += column sums of dout; any may be nullptr.
template <typename T>
void linear_backward(Blas& blas, T* dinp, T* dw, T* dbias, const T* dout, const T* inp, const T* w, int N, int IC,
                     int OC, bool accumulate_dinp, cudaStream_t stream);

}  // namespace cuda
}  // namespace fw
