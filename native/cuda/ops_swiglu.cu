// ops_swiglu.cu: SwiGLU forward and fused backward, elementwise.
//
// silu(g) = g * sigmoid(g); d silu / dg = s (1 + g (1 - s)) with s = sigmoid(g).
// The backward reads gate, up and dout once and writes both gradients, where
// an unfused version would recompute sigmoid and read gate twice.
#include "cuda_common.cuh"
#include "ops_swiglu.cuh"

namespace fw {
namespace cuda {

template <typename T>
__global__ void swiglu_forward_kernel(T* out, const T* gate, const T* up, size_t N) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < N; i += (size_t)gridDim.x * blockDim.x) {
    const float g = to_f32(gate[i]);
    const float s = 1.0f / (1.0f + __expf(-g));
    out[i] = from_f32<T>(g * s * to_f32(up[i]));
  }
}

template <typename T>
__global__ void swiglu_backward_kernel(T* dgate, T* dup, const T* dout, const T* gate, const T* up, size_t N) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < N; i += (size_t)gridDim.x * blockDim.x) {
    const float g = to_f32(gate[i]), u = to_f32(up[i]), d = to_f32(dout[i]);
    const float s = 1.0f / (1.0f + __expf(-g));
    dgate[i] = from_f32<T>(d * u * s * (1.0f + g * (1.0f - s)));
    dup[i] = from_f32<T>(d * g * s);
  }
}

static unsigned grid_for(size_t n) {
  unsigned g = ceil_div(n, 256);
  return g > 65535 ? 65535 : g;
}

template <typename T>
void swiglu_forward(T* out, const T* gate, const T* up, size_t N, cudaStream_t stream) {
  if (N == 0) return;
  swiglu_forward_kernel<T><<<grid_for(N), 256, 0, stream>>>(out, gate, up, N);
  FW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, size_t N, cudaStream_t stream) {
  if (N == 0) return;
  swiglu_backward_kernel<T><<<grid_for(N), 256, 0, stream>>>(dgate, dup, dout, gate, up, N);
  FW_CUDA_CHECK_LAUNCH();
}

template void swiglu_forward<float>(float*, const float*, const float*, size_t, cudaStream_t);
template void swiglu_forward<bf16>(bf16*, const bf16*, const bf16*, size_t, cudaStream_t);
template void swiglu_backward<float>(float*, float*, const float*, const float*, const float*, size_t, cudaStream_t);
template void swiglu_backward<bf16>(bf16*, bf16*, const bf16*, const bf16*, const bf16*, size_t, cudaStream_t);

}  // namespace cuda
}  // namespace fw
