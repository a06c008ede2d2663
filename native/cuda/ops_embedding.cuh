// ops_embedding.cuh: token embedding lookup on the GPU (engine/ops_embedding.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace fw {
namespace cuda {

// out (N, C) = wte (V, C) rows picked by tokens (N); ids in [0, V) (the
// caller checks them on the host, as ModelT::forward does).
template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, int N, int C, cudaStream_t stream);

// dwte (V, C) += dout (N, C) scattered to the rows of the batch's tokens,
// given as an EmbeddingPlan (embedding_plan.h) in device memory: ids (U),
// offsets (U + 1), positions (N). Deterministic: one thread per (row,
// column) adds that row's positions in ascending order in fp32 and writes
// once, so fp32 results equal the CPU's bit for bit.
template <typename T>
void embedding_backward(T* dwte, const T* dout, const int32_t* ids, const int32_t* offsets, const int32_t* positions,
                        int U, int C, cudaStream_t stream);

}  // namespace cuda
}  // namespace fw
