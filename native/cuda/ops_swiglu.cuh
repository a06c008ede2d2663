// ops_swiglu.cuh: the gated MLP nonlinearity on the GPU, h = silu(gate) * up
// (engine/ops_swiglu.h).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace fw {
namespace cuda {

// out, gate, up: (N) elements (N = B*T*I).
template <typename T>
void swiglu_forward(T* out, const T* gate, const T* up, size_t N, cudaStream_t stream);

// dgate, dup (N) overwritten from dout (N); both in one pass.
template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, size_t N, cudaStream_t stream);

}  // namespace cuda
}  // namespace fw
