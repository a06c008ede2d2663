// ops_linear.cu: bias add and bias gradient (column sums), the two small
// kernels around the cuBLAS matmuls of a Linear layer. The column sum reduces
// 32 columns x 32 row lanes per block in a fixed order, like RMSNorm's dweight.
#include "cuda_common.cuh"
#include "launch.cuh"
#include "ops_linear.cuh"

namespace fw {
namespace cuda {

template <typename T>
__global__ void bias_add_kernel(T* out, const T* bias, size_t total, int OC) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
    out[i] = from_f32<T>(to_f32(out[i]) + to_f32(bias[i % OC]));
}

template <typename T>
__global__ void add_inplace_kernel(T* x, const T* y, size_t n) {
  pdl_wait_then_trigger();
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    x[i] = from_f32<T>(to_f32(x[i]) + to_f32(y[i]));
}

// block (32, 32), grid (ceil(OC / 32)).
template <typename T>
__global__ void bias_backward_kernel(T* dbias, const T* dout, int N, int OC) {
  __shared__ float partial[32][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  float s = 0.0f;
  if (c < OC)
    for (int n = threadIdx.y; n < N; n += 32) s += to_f32(dout[(size_t)n * OC + c]);
  partial[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  for (int stride = 16; stride > 0; stride >>= 1) {
    if (threadIdx.y < stride) partial[threadIdx.y][threadIdx.x] += partial[threadIdx.y + stride][threadIdx.x];
    __syncthreads();
  }
  if (threadIdx.y == 0 && c < OC) dbias[c] = from_f32<T>(to_f32(dbias[c]) + partial[0][threadIdx.x]);
}

template <typename T>
void bias_add_forward(T* out, const T* bias, int N, int OC, cudaStream_t stream) {
  const size_t total = (size_t)N * OC;
  if (total == 0) return;
  unsigned grid = ceil_div(total, 256);
  if (grid > 65535) grid = 65535;
  bias_add_kernel<T><<<grid, 256, 0, stream>>>(out, bias, total, OC);
  FW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void add_inplace(T* x, const T* y, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  unsigned grid = ceil_div(n, 256);
  if (grid > 65535) grid = 65535;
  launch_pdl(add_inplace_kernel<T>, dim3(grid), dim3(256), stream, x, y, n);
  FW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void bias_backward(T* dbias, const T* dout, int N, int OC, cudaStream_t stream) {
  if (OC == 0) return;
  bias_backward_kernel<T><<<ceil_div(OC, 32), dim3(32, 32), 0, stream>>>(dbias, dout, N, OC);
  FW_CUDA_CHECK_LAUNCH();
}

template void bias_add_forward<float>(float*, const float*, int, int, cudaStream_t);
template void bias_add_forward<bf16>(bf16*, const bf16*, int, int, cudaStream_t);
template void bias_add_forward<f16>(f16*, const f16*, int, int, cudaStream_t);
template void bias_backward<float>(float*, const float*, int, int, cudaStream_t);
template void bias_backward<bf16>(bf16*, const bf16*, int, int, cudaStream_t);
template void bias_backward<f16>(f16*, const f16*, int, int, cudaStream_t);
template void add_inplace<float>(float*, const float*, size_t, cudaStream_t);
template void add_inplace<bf16>(bf16*, const bf16*, size_t, cudaStream_t);
template void add_inplace<f16>(f16*, const f16*, size_t, cudaStream_t);

}  // namespace cuda
}  // namespace fw
