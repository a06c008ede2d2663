// ops_rope.cuh: rotary position embedding on the GPU, Hugging Face
// "rotate_half" layout (engine/ops_rope.h): pairs are (i, i + HS/2).
#pragma once

#include <cuda_runtime.h>

namespace fw {
namespace cuda {

// cos_t, sin_t (S, HS/2) fp32 for positions 0..S-1, angles computed in double.
void rope_tables(float* cos_t, float* sin_t, int S, int HS, double theta, cudaStream_t stream);

// x (B, T, H, HS) rotated in place; token t is at position pos0 + t.
template <typename T>
void rope_forward(T* x, const float* cos_t, const float* sin_t, int B, int T_, int H, int HS, int pos0,
                  cudaStream_t stream);

// dx (B, T, H, HS) in place: the inverse rotation.
template <typename T>
void rope_backward(T* dx, const float* cos_t, const float* sin_t, int B, int T_, int H, int HS, int pos0,
                   cudaStream_t stream);

}  // namespace cuda
}  // namespace fw
