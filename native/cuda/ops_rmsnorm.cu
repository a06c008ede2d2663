// ops_rmsnorm.cu: RMSNorm forward and fused backward.
//
// One warp per row: a row (C <= a few thousand) is read once for the sum of
// squares and once for the output, both coalesced; rstd goes to a fp32 side
// buffer so backward need not recompute it. Backward does dinp for a row in
// one pass (the row's dot product and the update, fused), and dweight in a
// second kernel that reduces columns over rows in a fixed order (32 columns x
// 32 row lanes per block, then a shared-memory tree), deterministic without
// atomics. dweight's blocks number only C/32; fine for the C of the models we
// train, and the first thing to split over rows if a profile says so.
#include "cuda_common.cuh"
#include "ops_rmsnorm.cuh"

namespace fw {
namespace cuda {

constexpr int kRowsPerBlock = 8;  // warps per block, one row each

template <typename T>
__global__ void rmsnorm_forward_kernel(T* out, float* rstd, const T* inp, const T* weight, int N, int C,
                                       float eps) {
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
  if (n >= N) return;
  const T* x = inp + (size_t)n * C;
  float ss = 0.0f;
  for (int c = lane; c < C; c += 32) {
    float v = to_f32(x[c]);
    ss += v * v;
  }
  ss = warp_sum(ss);
  const float r = rsqrtf(ss / C + eps);
  T* y = out + (size_t)n * C;
  for (int c = lane; c < C; c += 32) y[c] = from_f32<T>(to_f32(x[c]) * r * to_f32(weight[c]));
  if (lane == 0) rstd[n] = r;
}

// dx_i += r * (w_i dy_i - x_i r * mean_j(w_j dy_j x_j r)).
template <typename T>
__global__ void rmsnorm_backward_dinp_kernel(T* dinp, const T* dout, const T* inp, const T* weight,
                                             const float* rstd, int N, int C) {
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
  if (n >= N) return;
  const T* x = inp + (size_t)n * C;
  const T* dy = dout + (size_t)n * C;
  T* dx = dinp + (size_t)n * C;
  const float r = rstd[n];
  float dot = 0.0f;
  for (int c = lane; c < C; c += 32) dot += to_f32(weight[c]) * to_f32(dy[c]) * to_f32(x[c]);
  dot = warp_sum(dot) * r / C;
  for (int c = lane; c < C; c += 32) {
    float g = r * (to_f32(weight[c]) * to_f32(dy[c]) - to_f32(x[c]) * r * dot);
    dx[c] = from_f32<T>(to_f32(dx[c]) + g);
  }
}

// block (32, 32): threadIdx.x = column within the block's 32, threadIdx.y =
// row lane; grid (ceil(C / 32)).
template <typename T>
__global__ void rmsnorm_backward_dweight_kernel(T* dweight, const T* dout, const T* inp, const float* rstd, int N,
                                                int C) {
  __shared__ float partial[32][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  float s = 0.0f;
  if (c < C) {
    for (int n = threadIdx.y; n < N; n += 32)
      s += to_f32(dout[(size_t)n * C + c]) * to_f32(inp[(size_t)n * C + c]) * rstd[n];
  }
  partial[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  for (int stride = 16; stride > 0; stride >>= 1) {
    if (threadIdx.y < stride) partial[threadIdx.y][threadIdx.x] += partial[threadIdx.y + stride][threadIdx.x];
    __syncthreads();
  }
  if (threadIdx.y == 0 && c < C) dweight[c] = from_f32<T>(to_f32(dweight[c]) + partial[0][threadIdx.x]);
}

template <typename T>
void rmsnorm_forward(T* out, float* rstd, const T* inp, const T* weight, int N, int C, double eps,
                     cudaStream_t stream) {
  if (N == 0) return;
  rmsnorm_forward_kernel<T><<<ceil_div(N, kRowsPerBlock), 32 * kRowsPerBlock, 0, stream>>>(out, rstd, inp, weight,
                                                                                         N, C, (float)eps);
  FW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const float* rstd, int N,
                      int C, cudaStream_t stream) {
  if (N == 0) return;
  rmsnorm_backward_dinp_kernel<T><<<ceil_div(N, kRowsPerBlock), 32 * kRowsPerBlock, 0, stream>>>(
      dinp, dout, inp, weight, rstd, N, C);
  FW_CUDA_CHECK_LAUNCH();
  if (dweight) {
    rmsnorm_backward_dweight_kernel<T><<<ceil_div(C, 32), dim3(32, 32), 0, stream>>>(dweight, dout, inp, rstd, N, C);
    FW_CUDA_CHECK_LAUNCH();
  }
}

template void rmsnorm_forward<float>(float*, float*, const float*, const float*, int, int, double, cudaStream_t);
template void rmsnorm_forward<bf16>(bf16*, float*, const bf16*, const bf16*, int, int, double, cudaStream_t);
template void rmsnorm_backward<float>(float*, float*, const float*, const float*, const float*, const float*, int,
                                      int, cudaStream_t);
template void rmsnorm_backward<bf16>(bf16*, bf16*, const bf16*, const bf16*, const bf16*, const float*, int, int,
                                     cudaStream_t);

}  // namespace cuda
}  // namespace fw
