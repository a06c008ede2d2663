// lora_cublas.h: LoRA adapters on the GPU, the same math as
// LoraT::forward / LoraT::backward (engine/lora.h) for one projection:
//   u (N, r) = drop(x) A^T;  out (N, OUT) += scale u B^T
// and backward
//   dB += scale dout^T u;  du = scale dout B;  dA += du^T drop(x);
//   dinp += drop'(du A)
// with A (r, IN), B (OUT, r). The four products go through cuBLAS, the
// dropout through lora_dropout.cuh (the CPU's mask). Compiled only with cuBLAS.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "gemm_cublas.h"

namespace fw {
namespace cuda {

struct LoraDims {
  int N = 0, IN = 0, OUT = 0, r = 0;
  float scale = 1.0f;    // alpha / r
  double dropout = 0.0;  // p
  uint64_t key = 0;      // lora_dropout_key(drop_key, l, m); 0 = no dropout (eval)
};

// The dropout key of projection m of layer l for a step's drop_key, as LoraT
// computes it (0 when drop_key is 0).
uint64_t lora_dropout_key(uint64_t drop_key, int l, int m);

// out (N, OUT) += the adapter's output; u (N, r) is written and must be kept
// for backward; xd (N, IN) scratch, used only with dropout (may be nullptr
// otherwise).
template <typename T>
void lora_forward(Blas& blas, T* out, T* u, T* xd, const T* inp, const T* A, const T* B, const LoraDims& d,
                  cudaStream_t stream);

// dA (r, IN), dB (OUT, r) += their gradients; dinp (N, IN) += the adapter's
// contribution (nullptr: not needed). du (N, r) scratch; xd (N, IN) scratch
// with dropout (its content is overwritten).
template <typename T>
void lora_backward(Blas& blas, T* dinp, T* dA, T* dB, T* du, T* xd, const T* dout, const T* inp, const T* u,
                   const T* A, const T* B, const LoraDims& d, cudaStream_t stream);

}  // namespace cuda
}  // namespace fw
