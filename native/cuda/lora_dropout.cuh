// lora_dropout.cuh: LoRA's input dropout on the GPU with the very mask the
// CPU draws (engine/lora.cpp): element e of a projection's (N, IN) input is
// dropped when rng_u01(rng_at(key, e)) < p, key = lora_dropout_key(...), so
// a GPU run and a CPU run of the same step drop the same elements
// (lora_dropout_key is in lora_cublas.h, next to LoraT).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace fw {
namespace cuda {

// xd (n) = mask ? 0 : inp / (1 - p).
template <typename T>
void lora_dropout_forward(T* xd, const T* inp, size_t n, uint64_t key, double p, cudaStream_t stream);

// dinp (n) += mask ? 0 : g / (1 - p).
template <typename T>
void lora_dropout_backward(T* dinp, const T* g, size_t n, uint64_t key, double p, cudaStream_t stream);

}  // namespace cuda
}  // namespace fw
