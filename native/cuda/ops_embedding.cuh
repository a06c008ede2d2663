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

// dwte (V, C) += dout (N, C) scattered to the rows of tokens. Deterministic:
// each row of dwte is owned by one block that adds its tokens in order.
template <typename T>
void embedding_backward(T* dwte, const T* dout, const int32_t* tokens, int N, int C, int V, cudaStream_t stream);

}  // namespace cuda
}  // namespace fw
