// ops_embedding.cu: embedding lookup and its scatter-add backward.
//
// The backward is where GPUs usually reach for atomicAdd, which makes the
// sum order (and so the bf16/fp32 rounding) change run to run. Here each block
// owns a slice of kRowsPerBlock vocabulary rows and walks the N token ids in
// order, adding the dout rows of the tokens that fall in its slice: the same
// order as the CPU loop, so the result is deterministic. The id scan costs
// N int loads per block, served from L2.
#include "cuda_common.cuh"
#include "ops_embedding.cuh"

namespace fw {
namespace cuda {

constexpr int kRowsPerBlock = 64;

// grid (N), block threads loop over C.
template <typename T>
__global__ void embedding_forward_kernel(T* out, const int32_t* tokens, const T* wte, int C) {
  const int n = blockIdx.x;
  const T* src = wte + (size_t)tokens[n] * C;
  T* dst = out + (size_t)n * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
}

// grid (ceil(V / kRowsPerBlock), ceil(C / blockDim.x)).
template <typename T>
__global__ void embedding_backward_kernel(T* dwte, const T* dout, const int32_t* tokens, int N, int C, int V) {
  const int v0 = blockIdx.x * kRowsPerBlock;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int n = 0; n < N; n++) {
    const int tok = tokens[n];  // same address for every thread: a broadcast
    if (tok < v0 || tok >= v0 + kRowsPerBlock || tok >= V) continue;
    T* d = dwte + (size_t)tok * C + c;
    *d = from_f32<T>(to_f32(*d) + to_f32(dout[(size_t)n * C + c]));
  }
}

template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, int N, int C, cudaStream_t stream) {
  if (N == 0) return;
  embedding_forward_kernel<T><<<N, 256, 0, stream>>>(out, tokens, wte, C);
  FW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void embedding_backward(T* dwte, const T* dout, const int32_t* tokens, int N, int C, int V, cudaStream_t stream) {
  if (N == 0) return;
  dim3 grid(ceil_div(V, kRowsPerBlock), ceil_div(C, 256));
  embedding_backward_kernel<T><<<grid, 256, 0, stream>>>(dwte, dout, tokens, N, C, V);
  FW_CUDA_CHECK_LAUNCH();
}

template void embedding_forward<float>(float*, const int32_t*, const float*, int, int, cudaStream_t);
template void embedding_forward<bf16>(bf16*, const int32_t*, const bf16*, int, int, cudaStream_t);
template void embedding_backward<float>(float*, const float*, const int32_t*, int, int, int, cudaStream_t);
template void embedding_backward<bf16>(bf16*, const bf16*, const int32_t*, int, int, int, cudaStream_t);

}  // namespace cuda
}  // namespace fw
