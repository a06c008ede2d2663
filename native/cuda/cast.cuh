// cast.cuh: fp32 <-> bf16 / fp16 conversions of whole buffers (master weights to
// the bf16 working copy, bf16 activations to fp32 for tests and checkpoints).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>

namespace fw {
namespace cuda {

// out (n) = round-to-nearest-even bf16 of in (n).
void cast_f32_to_bf16(__nv_bfloat16* out, const float* in, size_t n, cudaStream_t stream);
// out (n) = in (n) widened (exact).
void cast_bf16_to_f32(float* out, const __nv_bfloat16* in, size_t n, cudaStream_t stream);
// The same for fp16 (round to nearest even; values beyond fp16's range
// become inf).
void cast_f32_to_f16(__half* out, const float* in, size_t n, cudaStream_t stream);
void cast_f16_to_f32(float* out, const __half* in, size_t n, cudaStream_t stream);

// Host fp32 (n) -> device T (n) and back, converting on the device; both
// synchronise the stream (T = float, __nv_bfloat16 or __half).
template <typename T>
void upload_f32(T* dst, const float* src, size_t n, cudaStream_t stream);
template <typename T>
void download_f32(float* dst, const T* src, size_t n, cudaStream_t stream);

}  // namespace cuda
}  // namespace fw
