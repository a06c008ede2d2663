// lora_dropout.cu: the counter-based dropout mask of engine/train_rng.h
// (SplitMix64 mixing of (key, element index)) evaluated per element on the
// device. The comparison is done in double as on the CPU, so the masks agree
// bit for bit; nothing is stored between forward and backward.
#include "cuda_common.cuh"
#include "lora_dropout.cuh"
#include "train_rng.h"

namespace fw {
namespace cuda {

// Same constants and steps as fw::rng_mix / rng_at / rng_u01.
__device__ __forceinline__ uint64_t dev_rng_mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
__device__ __forceinline__ bool dropped(uint64_t mixed_key, uint64_t e, double p) {
  const uint64_t bits = dev_rng_mix(mixed_key ^ e);
  return (double)(bits >> 11) * (1.0 / 9007199254740992.0) < p;
}

// mixed_key = rng_mix(key), hoisted out of the per-element work.
template <typename T>
__global__ void lora_dropout_forward_kernel(T* xd, const T* inp, size_t n, uint64_t mixed_key, double p,
                                            float keep) {
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
    xd[e] = dropped(mixed_key, e, p) ? from_f32<T>(0.0f) : from_f32<T>(to_f32(inp[e]) * keep);
}

template <typename T>
__global__ void lora_dropout_backward_kernel(T* dinp, const T* g, size_t n, uint64_t mixed_key, double p,
                                             float keep) {
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
    if (!dropped(mixed_key, e, p)) dinp[e] = from_f32<T>(to_f32(dinp[e]) + to_f32(g[e]) * keep);
}

static unsigned grid_for(size_t n) {
  unsigned g = ceil_div(n, 256);
  return g < 1 ? 1 : (g > 65535 ? 65535 : g);
}

template <typename T>
void lora_dropout_forward(T* xd, const T* inp, size_t n, uint64_t key, double p, cudaStream_t stream) {
  FW_CHECK(p >= 0 && p < 1, kInvalidArgument, "lora dropout " << p << " outside [0, 1)");
  if (n == 0) return;
  lora_dropout_forward_kernel<T><<<grid_for(n), 256, 0, stream>>>(xd, inp, n, rng_mix(key), p,
                                                                  (float)(1.0 / (1.0 - p)));
  FW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void lora_dropout_backward(T* dinp, const T* g, size_t n, uint64_t key, double p, cudaStream_t stream) {
  FW_CHECK(p >= 0 && p < 1, kInvalidArgument, "lora dropout " << p << " outside [0, 1)");
  if (n == 0) return;
  lora_dropout_backward_kernel<T><<<grid_for(n), 256, 0, stream>>>(dinp, g, n, rng_mix(key), p,
                                                                   (float)(1.0 / (1.0 - p)));
  FW_CUDA_CHECK_LAUNCH();
}

template void lora_dropout_forward<float>(float*, const float*, size_t, uint64_t, double, cudaStream_t);
template void lora_dropout_forward<bf16>(bf16*, const bf16*, size_t, uint64_t, double, cudaStream_t);
template void lora_dropout_backward<float>(float*, const float*, size_t, uint64_t, double, cudaStream_t);
template void lora_dropout_backward<bf16>(bf16*, const bf16*, size_t, uint64_t, double, cudaStream_t);
template void lora_dropout_forward<f16>(f16*, const f16*, size_t, uint64_t, double, cudaStream_t);
template void lora_dropout_backward<f16>(f16*, const f16*, size_t, uint64_t, double, cudaStream_t);

}  // namespace cuda
}  // namespace fw
