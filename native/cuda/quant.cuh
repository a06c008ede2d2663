// quant.cuh: INT8 weight-only matmul on the GPU for decode (engine/quant.h).
// W (OC, IC) is int8 q plus one fp32 scale per output channel (quantize with
// fw::quantize_q8 on the host and copy q and scale to the device).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace fw {
namespace cuda {

// out (N, OC) = in (N, IC) @ (scale[o] * q[o, :])^T + bias (bias (OC) or
// nullptr); q (OC, IC) int8, scale (OC) fp32. Built for small N (decode:
// the batch); weights are read once per 8 rows of in.
template <typename T>
void matmul_q8(T* out, const T* in, const int8_t* q, const float* scale, const T* bias, int N, int OC, int IC,
               cudaStream_t stream);

}  // namespace cuda
}  // namespace fw
