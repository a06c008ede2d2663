// cuda_common.cuh: what every CUDA file of the engine shares: the error check
// that turns a CUDA status into fw::Error (library code never exits, see
// engine/common.h), the fp32 <-> storage-type conversions and warp reductions.
//
// Storage types. Every kernel is a template over its storage type T, float,
// __nv_bfloat16 (bf16 mixed precision) or __half (fp16 mixed precision, with
// dynamic loss scaling); arithmetic is always fp32, so a 16-bit kernel differs
// from the fp32 one only by the rounding of what it loads and stores. Statistics kept for backward (rstd, lse) and optimizer state are fp32
// whatever T is.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common.h"
#include "cuda_check.h"

namespace fw {
namespace cuda {

using bf16 = __nv_bfloat16;
using f16 = __half;

// Device-side float views of a storage value.
__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(f16 x) { return __half2float(x); }

template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ bf16 from_f32<bf16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ f16 from_f32<f16>(float x) { return __float2half_rn(x); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over a block whose size is a multiple of 32 (<= 1024); every thread gets
// the result. shared: at least 32 floats. The order of the additions is fixed,
// so the result is the same run to run.
__device__ __forceinline__ float block_sum(float v, float* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // shared may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < nwarps ? shared[lane] : 0.0f;
  return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < nwarps ? shared[lane] : -INFINITY;
  return warp_max(v);
}

// 1 / rms of row x (C) computed by one warp (lane-strided sum of squares,
// then a warp sum), every lane gets it: RMSNorm's statistic. Every kernel
// that normalises calls this, so they agree bit for bit.
template <typename T>
__device__ __forceinline__ float warp_row_rstd(const T* x, int C, float eps) {
  const int lane = threadIdx.x & 31;
  float ss = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float v = to_f32(x[c]);
    ss += v * v;
  }
  ss = warp_sum(ss);
  return rsqrtf(ss / C + eps);
}

// RoPE (HF rotate_half) of the pair (x1, x2) = (x[i], x[i + HS/2]) by the
// angle with cosine c and sine s, each result rounded to T as stored. The
// decode kernels that rotate call this, so they agree bit for bit.
template <typename T>
__device__ __forceinline__ void rope_rotate(float x1, float x2, float c, float s, T& r1, T& r2) {
  r1 = from_f32<T>(x1 * c - x2 * s);
  r2 = from_f32<T>(x2 * c + x1 * s);
}

inline unsigned ceil_div(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }

// 16 bytes of storage values (8 bf16 or 4 float), loaded and stored as one
// vector access (ld/st.global.v4). Elementwise kernels use it when every
// pointer is 16-byte aligned and the length a multiple of kPack<T>.
template <typename T>
constexpr int kPack = 16 / (int)sizeof(T);
template <typename T>
struct alignas(16) Pack {
  T v[kPack<T>];
};
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace cuda
}  // namespace fw
