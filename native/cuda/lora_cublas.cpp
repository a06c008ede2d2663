// lora_cublas.cpp: LoRA forward/backward of one projection on cuBLAS. The
// order of operations is LoraT's, so the parity test can compare each
// gradient; the dropout mask is recomputed in backward from the same key
// rather than stored.
#include "lora_cublas.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common.h"
#include "lora.h"
#include "lora_dropout.cuh"
#include "train_rng.h"

namespace fw {
namespace cuda {

uint64_t lora_dropout_key(uint64_t drop_key, int l, int m) {
  if (drop_key == 0) return 0;
  return rng_mix(drop_key + (uint64_t)(l * kLoraModules + m + 1) * 0xD1B54A32D192ED03ull);
}

template <typename T>
static const T* dropped_input(T* xd, const T* inp, const LoraDims& d, cudaStream_t stream) {
  if (d.key == 0 || d.dropout <= 0) return inp;
  FW_CHECK(xd, kInvalidArgument, "lora: dropout needs the xd (N, IN) scratch buffer");
  lora_dropout_forward(xd, inp, (size_t)d.N * d.IN, d.key, d.dropout, stream);
  return xd;
}

template <typename T>
void lora_forward(Blas& blas, T* out, T* u, T* xd, const T* inp, const T* A, const T* B, const LoraDims& d,
                  cudaStream_t stream) {
  const T* x = dropped_input(xd, inp, d, stream);
  gemm<T>(blas, false, true, d.N, d.r, d.IN, 1.0f, x, d.IN, A, d.IN, 0.0f, u, d.r, stream);          // u = x A^T
  gemm<T>(blas, false, true, d.N, d.OUT, d.r, d.scale, u, d.r, B, d.r, 1.0f, out, d.OUT, stream);  // out += s u B^T
}

template <typename T>
void lora_backward(Blas& blas, T* dinp, T* dA, T* dB, T* du, T* xd, const T* dout, const T* inp, const T* u,
                   const T* A, const T* B, const LoraDims& d, cudaStream_t stream) {
  const T* x = dropped_input(xd, inp, d, stream);
  gemm<T>(blas, true, false, d.OUT, d.r, d.N, d.scale, dout, d.OUT, u, d.r, 1.0f, dB, d.r, stream);   // dB += s dout^T u
  gemm<T>(blas, false, false, d.N, d.r, d.OUT, d.scale, dout, d.OUT, B, d.r, 0.0f, du, d.r, stream);  // du = s dout B
  gemm<T>(blas, true, false, d.r, d.IN, d.N, 1.0f, du, d.r, x, d.IN, 1.0f, dA, d.IN, stream);         // dA += du^T x
  if (!dinp) return;
  if (x == inp) {
    gemm<T>(blas, false, false, d.N, d.IN, d.r, 1.0f, du, d.r, A, d.IN, 1.0f, dinp, d.IN, stream);  // dinp += du A
    return;
  }
  // With dropout: xd (no longer needed) takes du A; dinp += it where kept.
  gemm<T>(blas, false, false, d.N, d.IN, d.r, 1.0f, du, d.r, A, d.IN, 0.0f, xd, d.IN, stream);
  lora_dropout_backward(dinp, xd, (size_t)d.N * d.IN, d.key, d.dropout, stream);
}

#define FW_LORA_INSTANTIATE(T)                                                                                   \
  template void lora_forward<T>(Blas&, T*, T*, T*, const T*, const T*, const T*, const LoraDims&, cudaStream_t); \
  template void lora_backward<T>(Blas&, T*, T*, T*, T*, T*, const T*, const T*, const T*, const T*, const T*,    \
                                 const LoraDims&, cudaStream_t);
FW_LORA_INSTANTIATE(float)
FW_LORA_INSTANTIATE(__nv_bfloat16)
FW_LORA_INSTANTIATE(__half)
#undef FW_LORA_INSTANTIATE

}  // namespace cuda
}  // namespace fw
