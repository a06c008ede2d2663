// ops_rmsnorm.cuh: RMSNorm on the GPU (engine/ops_rmsnorm.h):
// y = x / sqrt(mean(x^2) + eps) * w.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace fw {
namespace cuda {

// out (N, C), rstd (N) fp32 kept for backward; inp (N, C), weight (C).
template <typename T>
void rmsnorm_forward(T* out, float* rstd, const T* inp, const T* weight, int N, int C, double eps,
                     cudaStream_t stream);

// dinp (N, C) += d/dinp; dweight (C) += d/dweight (nullptr: frozen).
// Deterministic (no atomics). scratch: rmsnorm_backward_scratch_floats(N, C)
// floats of device memory for dweight's partial sums (unused without dweight).
template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const float* rstd, int N,
                      int C, float* scratch, cudaStream_t stream);
size_t rmsnorm_backward_scratch_floats(int N, int C);

}  // namespace cuda
}  // namespace fw
