// cast.cu: elementwise fp32 <-> bf16 / fp16 buffer conversions. Grid-stride loops, so
// any n works with a bounded grid.
#include "cast.cuh"
#include "cuda_common.cuh"

namespace fw {
namespace cuda {

__global__ void cast_f32_to_bf16_kernel(bf16* out, const float* in, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    out[i] = __float2bfloat16_rn(in[i]);
}

__global__ void cast_bf16_to_f32_kernel(float* out, const bf16* in, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    out[i] = __bfloat162float(in[i]);
}

__global__ void cast_f32_to_f16_kernel(f16* out, const float* in, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    out[i] = __float2half_rn(in[i]);
}

__global__ void cast_f16_to_f32_kernel(float* out, const f16* in, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    out[i] = __half2float(in[i]);
}

static unsigned elementwise_grid(size_t n) {
  unsigned g = ceil_div(n, 256);
  return g < 1 ? 1 : (g > 65535 ? 65535 : g);
}

void cast_f32_to_bf16(bf16* out, const float* in, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  cast_f32_to_bf16_kernel<<<elementwise_grid(n), 256, 0, stream>>>(out, in, n);
  FW_CUDA_CHECK_LAUNCH();
}

void cast_bf16_to_f32(float* out, const bf16* in, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  cast_bf16_to_f32_kernel<<<elementwise_grid(n), 256, 0, stream>>>(out, in, n);
  FW_CUDA_CHECK_LAUNCH();
}

void cast_f32_to_f16(f16* out, const float* in, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  cast_f32_to_f16_kernel<<<elementwise_grid(n), 256, 0, stream>>>(out, in, n);
  FW_CUDA_CHECK_LAUNCH();
}

void cast_f16_to_f32(float* out, const f16* in, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  cast_f16_to_f32_kernel<<<elementwise_grid(n), 256, 0, stream>>>(out, in, n);
  FW_CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace fw
