// ops_loss.cu: cross-entropy forward, backward and the fused pair.
//
// One block per row. The log-sum-exp is computed in one read of the row with
// an online max (each thread keeps a running max m and sum s of exp(x - m),
// rescaling s when m grows; the block then merges the (m, s) pairs), so the
// forward reads the logits once; the fused kernel reads them a second time to
// write the gradient in place. For V = 50k and N = 8k rows that is the
// difference between 1.6 GB and 2.4 GB of traffic per step in fp32.
#include "cuda_common.cuh"
#include "ops_loss.cuh"

namespace fw {
namespace cuda {

constexpr int kThreads = 512;

// Log-sum-exp of row x (V) over the block; every thread gets it.
template <typename T>
__device__ float block_row_lse(const T* x, int V, float* shared) {
  float m = -INFINITY, s = 0.0f;
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    const float v = to_f32(x[i]);
    if (v > m) {
      s = s * __expf(m - v) + 1.0f;  // exp(-inf) = 0 on the first element
      m = v;
    } else {
      s += __expf(v - m);
    }
  }
  const float row_max = block_max(m, shared);
  const float scaled = m == -INFINITY ? 0.0f : s * __expf(m - row_max);
  const float total = block_sum(scaled, shared);
  return row_max + logf(total);
}

template <typename T>
__global__ void crossentropy_forward_kernel(float* losses, float* lse, const T* logits, const int32_t* targets,
                                            int V) {
  __shared__ float shared[32];
  const int n = blockIdx.x;
  const T* x = logits + (size_t)n * V;
  const float l = block_row_lse(x, V, shared);
  if (threadIdx.x == 0) {
    const int32_t t = targets[n];
    lse[n] = l;
    losses[n] = t == -100 ? 0.0f : l - to_f32(x[t]);
  }
}

template <typename T>
__global__ void crossentropy_backward_kernel(T* dlogits, const T* logits, const float* lse, const int32_t* targets,
                                             int V, float scale) {
  const int n = blockIdx.x;
  const int32_t t = targets[n];
  const T* x = logits + (size_t)n * V;
  T* d = dlogits + (size_t)n * V;
  const float l = lse[n];
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    float g = 0.0f;
    if (t != -100) g = scale * (__expf(to_f32(x[i]) - l) - (i == t ? 1.0f : 0.0f));
    d[i] = from_f32<T>(g);  // each element read (above) before it is written: aliasing is fine
  }
}

template <typename T>
__global__ void crossentropy_forward_backward_kernel(T* xd, float* losses, float* lse, const int32_t* targets, int V,
                                                     float scale) {
  __shared__ float shared[32];
  const int n = blockIdx.x;
  T* x = xd + (size_t)n * V;
  const int32_t t = targets[n];
  const float l = block_row_lse(x, V, shared);
  if (threadIdx.x == 0) {
    if (lse) lse[n] = l;
    losses[n] = t == -100 ? 0.0f : l - to_f32(x[t]);
  }
  // Every thread must have read x[t] (thread 0 above) before anyone writes it.
  __syncthreads();
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    float g = 0.0f;
    if (t != -100) g = scale * (__expf(to_f32(x[i]) - l) - (i == t ? 1.0f : 0.0f));
    x[i] = from_f32<T>(g);
  }
}

template <typename T>
void crossentropy_forward(float* losses, float* lse, const T* logits, const int32_t* targets, int N, int V,
                          cudaStream_t stream) {
  if (N == 0) return;
  crossentropy_forward_kernel<T><<<N, kThreads, 0, stream>>>(losses, lse, logits, targets, V);
  FW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void crossentropy_backward(T* dlogits, const T* logits, const float* lse, const int32_t* targets, int N, int V,
                           float scale, cudaStream_t stream) {
  if (N == 0) return;
  crossentropy_backward_kernel<T><<<N, kThreads, 0, stream>>>(dlogits, logits, lse, targets, V, scale);
  FW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void crossentropy_forward_backward(T* logits_dlogits, float* losses, float* lse, const int32_t* targets, int N,
                                   int V, float scale, cudaStream_t stream) {
  if (N == 0) return;
  crossentropy_forward_backward_kernel<T><<<N, kThreads, 0, stream>>>(logits_dlogits, losses, lse, targets, V,
                                                                      scale);
  FW_CUDA_CHECK_LAUNCH();
}

template void crossentropy_forward<float>(float*, float*, const float*, const int32_t*, int, int, cudaStream_t);
template void crossentropy_forward<bf16>(float*, float*, const bf16*, const int32_t*, int, int, cudaStream_t);
template void crossentropy_backward<float>(float*, const float*, const float*, const int32_t*, int, int, float,
                                           cudaStream_t);
template void crossentropy_backward<bf16>(bf16*, const bf16*, const float*, const int32_t*, int, int, float,
                                          cudaStream_t);
template void crossentropy_forward_backward<float>(float*, float*, float*, const int32_t*, int, int, float,
                                                   cudaStream_t);
template void crossentropy_forward_backward<bf16>(bf16*, float*, float*, const int32_t*, int, int, float,
                                                  cudaStream_t);

}  // namespace cuda
}  // namespace fw
