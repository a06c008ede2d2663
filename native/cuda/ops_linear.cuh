// ops_linear.cuh: the bias parts of y = x W^T + b on the GPU; the matrix
// products go through cuBLAS (gemm_cublas.h), which composes them into
// linear_forward / linear_backward.
#pragma once

#include <cuda_runtime.h>

namespace fw {
namespace cuda {

// out (N, OC) += bias (OC) broadcast over rows.
template <typename T>
void bias_add_forward(T* out, const T* bias, int N, int OC, cudaStream_t stream);

// x (n) += y (n) elementwise (a residual add).
template <typename T>
void add_inplace(T* x, const T* y, size_t n, cudaStream_t stream);

// dbias (OC) += column sums of dout (N, OC), fixed order (deterministic).
template <typename T>
void bias_backward(T* dbias, const T* dout, int N, int OC, cudaStream_t stream);

}  // namespace cuda
}  // namespace fw
