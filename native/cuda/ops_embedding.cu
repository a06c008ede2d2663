// ops_embedding.cu: embedding lookup and its scatter-add backward.
//
// The backward is where GPUs usually reach for atomicAdd, which makes the
// sum order (and so the bf16/fp32 rounding) change run to run. Here the host
// groups the batch's positions by token id (embedding_plan.h) and one block
// column per touched vocabulary row sums that row's positions in ascending
// order: the CPU loop's order, deterministic, and each dout row is read once
// (an earlier version had every block scan all N ids).
#include "cuda_common.cuh"
#include "launch.cuh"
#include "ops_embedding.cuh"

namespace fw {
namespace cuda {

template <typename T>
__global__ void embedding_forward_kernel(T* out, const int32_t* tokens, const T* wte, int C) {
  pdl_wait_then_trigger();
  const int n = blockIdx.x;
  const T* src = wte + (size_t)tokens[n] * C;
  T* dst = out + (size_t)n * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
}

// grid (U, ceil(C / blockDim.x)): block (u, cy) owns columns of row ids[u].
template <typename T>
__global__ void embedding_backward_kernel(T* dwte, const T* dout, const int32_t* ids, const int32_t* offsets,
                                          const int32_t* positions, int C) {
  const int u = blockIdx.x;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  T* d = dwte + (size_t)ids[u] * C + c;
  float acc = to_f32(*d);
  const int end = offsets[u + 1];
  for (int k = offsets[u]; k < end; k++) acc += to_f32(dout[(size_t)positions[k] * C + c]);
  *d = from_f32<T>(acc);
}

template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, int N, int C, cudaStream_t stream) {
  if (N == 0) return;
  launch_pdl(embedding_forward_kernel<T>, dim3(N), dim3(256), stream, out, tokens, wte, C);
  FW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void embedding_backward(T* dwte, const T* dout, const int32_t* ids, const int32_t* offsets, const int32_t* positions,
                        int U, int C, cudaStream_t stream) {
  if (U == 0) return;
  dim3 grid(U, ceil_div(C, 256));
  embedding_backward_kernel<T><<<grid, 256, 0, stream>>>(dwte, dout, ids, offsets, positions, C);
  FW_CUDA_CHECK_LAUNCH();
}

template void embedding_forward<float>(float*, const int32_t*, const float*, int, int, cudaStream_t);
template void embedding_forward<bf16>(bf16*, const int32_t*, const bf16*, int, int, cudaStream_t);
template void embedding_forward<f16>(f16*, const int32_t*, const f16*, int, int, cudaStream_t);
template void embedding_backward<float>(float*, const float*, const int32_t*, const int32_t*, const int32_t*, int, int,
                                        cudaStream_t);
template void embedding_backward<bf16>(bf16*, const bf16*, const int32_t*, const int32_t*, const int32_t*, int, int,
                                       cudaStream_t);
template void embedding_backward<f16>(f16*, const f16*, const int32_t*, const int32_t*, const int32_t*, int, int,
                                       cudaStream_t);

}  // namespace cuda
}  // namespace fw
