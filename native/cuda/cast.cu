// cast.cu: elementwise fp32 <-> bf16 / fp16 buffer conversions. Grid-stride loops, so
// any n works with a bounded grid.
#include "cast.cuh"
#include "cuda_common.cuh"

#include <type_traits>

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

static void to_f32_buffer(float* dst, const bf16* src, size_t n, cudaStream_t s) { cast_bf16_to_f32(dst, src, n, s); }
static void to_f32_buffer(float* dst, const f16* src, size_t n, cudaStream_t s) { cast_f16_to_f32(dst, src, n, s); }
static void from_f32_buffer(bf16* dst, const float* src, size_t n, cudaStream_t s) { cast_f32_to_bf16(dst, src, n, s); }
static void from_f32_buffer(f16* dst, const float* src, size_t n, cudaStream_t s) { cast_f32_to_f16(dst, src, n, s); }

template <typename T>
void upload_f32(T* dst, const float* src, size_t n, cudaStream_t s) {
  if (n == 0) return;
  if constexpr (std::is_same<T, float>::value) {
    FW_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyHostToDevice, s));
  } else {
    float* tmp = nullptr;
    FW_CUDA_CHECK(cudaMallocAsync(&tmp, n * sizeof(float), s));
    FW_CUDA_CHECK(cudaMemcpyAsync(tmp, src, n * sizeof(float), cudaMemcpyHostToDevice, s));
    from_f32_buffer(dst, tmp, n, s);
    FW_CUDA_CHECK(cudaFreeAsync(tmp, s));
  }
  FW_CUDA_CHECK(cudaStreamSynchronize(s));
}

template <typename T>
void download_f32(float* dst, const T* src, size_t n, cudaStream_t s) {
  if (n == 0) return;
  if constexpr (std::is_same<T, float>::value) {
    FW_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, s));
  } else {
    float* tmp = nullptr;
    FW_CUDA_CHECK(cudaMallocAsync(&tmp, n * sizeof(float), s));
    to_f32_buffer(tmp, src, n, s);
    FW_CUDA_CHECK(cudaMemcpyAsync(dst, tmp, n * sizeof(float), cudaMemcpyDeviceToHost, s));
    FW_CUDA_CHECK(cudaFreeAsync(tmp, s));
  }
  FW_CUDA_CHECK(cudaStreamSynchronize(s));
}

template void upload_f32<float>(float*, const float*, size_t, cudaStream_t);
template void upload_f32<bf16>(bf16*, const float*, size_t, cudaStream_t);
template void upload_f32<f16>(f16*, const float*, size_t, cudaStream_t);
template void download_f32<float>(float*, const float*, size_t, cudaStream_t);
template void download_f32<bf16>(float*, const bf16*, size_t, cudaStream_t);
template void download_f32<f16>(float*, const f16*, size_t, cudaStream_t);

}  // namespace cuda
}  // namespace fw
