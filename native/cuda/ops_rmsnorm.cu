// ops_rmsnorm.cu: RMSNorm forward and fused backward.
//
// One warp per row: a row (C <= a few thousand) is read once for the sum of
// squares and once for the output, both coalesced; rstd goes to a fp32 side
// buffer so backward need not recompute it. Backward does dinp for a row in
// one pass (the row's dot product and the update, fused), and dweight in two
// more kernels, deterministic without atomics: blocks of 32 columns x 256
// rows each write a partial column sum to scratch (rows in a fixed order),
// then one thread per column adds the partials in chunk order. The split over
// rows keeps the GPU busy at N = 8k rows and C = 768 (768 blocks instead of
// the 24 a column-only split gives).
#include "cuda_common.cuh"
#include "launch.cuh"
#include "ops_rmsnorm.cuh"

namespace fw {
namespace cuda {

constexpr int kRowsPerBlock = 8;  // warps per block, one row each

template <typename T>
__global__ void rmsnorm_forward_kernel(T* out, float* rstd, const T* inp, const T* weight, int N, int C,
                                       float eps) {
  pdl_wait_then_trigger();
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
  if (n >= N) return;
  const T* x = inp + (size_t)n * C;
  const float r = warp_row_rstd(x, C, eps);
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

constexpr int kDwRows = 256;   // rows per partial sum
constexpr int kDwLanes = 8;    // row lanes per block

// partial (R, C), R = ceil(N / kDwRows): partial[r][c] = sum over rows
// [r * kDwRows, (r + 1) * kDwRows) of dout * inp * rstd. block (32,
// kDwLanes): threadIdx.x = column within the block's 32, threadIdx.y = row
// lane; grid (ceil(C / 32), R).
template <typename T>
__global__ void rmsnorm_dweight_partial_kernel(float* partial, const T* dout, const T* inp, const float* rstd, int N,
                                               int C) {
  __shared__ float lanes[kDwLanes][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  const int r0 = blockIdx.y * kDwRows, r1 = min(N, r0 + kDwRows);
  float s = 0.0f;
  if (c < C)
    for (int n = r0 + threadIdx.y; n < r1; n += kDwLanes)
      s += to_f32(dout[(size_t)n * C + c]) * to_f32(inp[(size_t)n * C + c]) * rstd[n];
  lanes[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float t = 0.0f;
    for (int y = 0; y < kDwLanes; y++) t += lanes[y][threadIdx.x];
    partial[(size_t)blockIdx.y * C + c] = t;
  }
}

// dweight[c] += sum over r of partial[r][c], in r order. grid ceil(C / 256).
template <typename T>
__global__ void rmsnorm_dweight_reduce_kernel(T* dweight, const float* partial, int R, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float t = 0.0f;
  for (int r = 0; r < R; r++) t += partial[(size_t)r * C + c];
  dweight[c] = from_f32<T>(to_f32(dweight[c]) + t);
}

template <typename T>
void rmsnorm_forward(T* out, float* rstd, const T* inp, const T* weight, int N, int C, double eps,
                     cudaStream_t stream) {
  if (N == 0) return;
  launch_pdl(rmsnorm_forward_kernel<T>, dim3(ceil_div(N, kRowsPerBlock)), dim3(32 * kRowsPerBlock), stream, out, rstd,
             inp, weight, N, C, (float)eps);
  FW_CUDA_CHECK_LAUNCH();
}

size_t rmsnorm_backward_scratch_floats(int N, int C) { return (size_t)ceil_div(N, kDwRows) * C; }

template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const float* rstd, int N,
                      int C, float* scratch, cudaStream_t stream) {
  if (N == 0) return;
  rmsnorm_backward_dinp_kernel<T><<<ceil_div(N, kRowsPerBlock), 32 * kRowsPerBlock, 0, stream>>>(
      dinp, dout, inp, weight, rstd, N, C);
  FW_CUDA_CHECK_LAUNCH();
  if (dweight) {
    FW_CHECK(scratch != nullptr, kInvalidArgument, "rmsnorm_backward: dweight needs scratch");
    const int R = ceil_div(N, kDwRows);
    rmsnorm_dweight_partial_kernel<T><<<dim3(ceil_div(C, 32), R), dim3(32, kDwLanes), 0, stream>>>(scratch, dout, inp,
                                                                                                  rstd, N, C);
    FW_CUDA_CHECK_LAUNCH();
    rmsnorm_dweight_reduce_kernel<T><<<ceil_div(C, 256), 256, 0, stream>>>(dweight, scratch, R, C);
    FW_CUDA_CHECK_LAUNCH();
  }
}

template void rmsnorm_forward<float>(float*, float*, const float*, const float*, int, int, double, cudaStream_t);
template void rmsnorm_forward<bf16>(bf16*, float*, const bf16*, const bf16*, int, int, double, cudaStream_t);
template void rmsnorm_forward<f16>(f16*, float*, const f16*, const f16*, int, int, double, cudaStream_t);
template void rmsnorm_backward<float>(float*, float*, const float*, const float*, const float*, const float*, int,
                                      int, float*, cudaStream_t);
template void rmsnorm_backward<bf16>(bf16*, bf16*, const bf16*, const bf16*, const bf16*, const float*, int, int,
                                     float*, cudaStream_t);
template void rmsnorm_backward<f16>(f16*, f16*, const f16*, const f16*, const f16*, const float*, int, int,
                                     float*, cudaStream_t);

}  // namespace cuda
}  // namespace fw
