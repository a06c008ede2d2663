// lora_cuda.cpp: CudaLora's buffers and its per-projection calls into
// lora_cublas.h. Host C++ against the CUDA runtime (cuBLAS only through
// lora_cublas.h), compile-checked with the model.
#include "lora_cuda.h"

#include <algorithm>

#include "cast.cuh"
#include "common.h"
#include "cuda_check.h"
#include "lora_cublas.h"
#include "optim.cuh"

namespace fw {
namespace cuda {

template <typename T>
CudaLora<T>::CudaLora(const Lora& host, cudaStream_t stream)
    : mcfg(host.mcfg),
      cfg(host.cfg),
      scale((float)host.scale),
      layout(host.layout),
      stream_(stream),
      a_index_(host.a_index),
      b_index_(host.b_index) {
  alloc_ = layout.numel + kShardSlack;
  FW_CUDA_CHECK(cudaMalloc(&params_, alloc_ * sizeof(T)));
  FW_CUDA_CHECK(cudaMalloc(&grads_, alloc_ * sizeof(T)));
  FW_CUDA_CHECK(cudaMemsetAsync(params_, 0, alloc_ * sizeof(T), stream_));
  FW_CUDA_CHECK(cudaMemsetAsync(grads_, 0, alloc_ * sizeof(T), stream_));
  const size_t C = mcfg.hidden_size, I = mcfg.intermediate_size,
               QD = (size_t)mcfg.num_attention_heads * mcfg.head_dim;
  max_in_ = std::max({C, I, QD});
  load_params(host.params.data());
}

template <typename T>
CudaLora<T>::~CudaLora() {
  cudaFree(params_);
  cudaFree(grads_);
  cudaFree(saved_);
  cudaFree(xd_);
  cudaFree(du_);
}

template <typename T>
void CudaLora<T>::load_params(const float* host) {
  upload_f32(params_, host, layout.numel, stream_);
}

template <typename T>
void CudaLora<T>::download_params(float* host) const {
  download_f32(host, params_, layout.numel, stream_);
}

template <typename T>
void CudaLora<T>::download_grads(float* host) const {
  download_f32(host, grads_, layout.numel, stream_);
}

template <typename T>
void CudaLora<T>::zero_grad() {
  FW_CUDA_CHECK(cudaMemsetAsync(grads_, 0, alloc_ * sizeof(T), stream_));
}

template <typename T>
void CudaLora<T>::ensure(int N) {
  if (N == n_ && saved_) return;
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  FW_CUDA_CHECK(cudaStreamIsCapturing(stream_, &cs));
  FW_CHECK(cs == cudaStreamCaptureStatusNone, kInvalidArgument,
           "LoRA buffers for a new batch shape cannot be allocated during graph capture (run one step first)");
  FW_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the old buffers may still be in use
  cudaFree(saved_);
  cudaFree(xd_);
  cudaFree(du_);
  saved_ = xd_ = du_ = nullptr;
  const size_t n = (size_t)N, r = (size_t)cfg.rank;
  FW_CUDA_CHECK(cudaMalloc(&saved_, (size_t)mcfg.num_hidden_layers * kLoraModules * n * r * sizeof(T)));
  FW_CUDA_CHECK(cudaMalloc(&du_, n * r * sizeof(T)));
  if (cfg.dropout > 0) FW_CUDA_CHECK(cudaMalloc(&xd_, n * max_in_ * sizeof(T)));
  n_ = N;
}

template <typename T>
size_t CudaLora<T>::bytes() const {
  const size_t n = (size_t)n_, r = (size_t)cfg.rank;
  size_t b = 2 * alloc_ * sizeof(T);
  if (saved_) b += ((size_t)mcfg.num_hidden_layers * kLoraModules * n * r + n * r) * sizeof(T);
  if (xd_) b += n * max_in_ * sizeof(T);
  return b;
}

template <typename T>
LoraDims CudaLora<T>::dims(int l, int m, int N, int IN, int OUT, uint64_t drop_key) const {
  LoraDims d;
  d.N = N;
  d.IN = IN;
  d.OUT = OUT;
  d.r = cfg.rank;
  d.scale = scale;
  d.dropout = cfg.dropout;
  d.key = lora_dropout_key(drop_key, l, m);
  return d;
}

template <typename T>
void CudaLora<T>::forward(Blas& blas, int l, int m, T* out, const T* inp, int N, int IN, int OUT, uint64_t drop_key,
                          cudaStream_t stream) {
  if (!targets(l, m)) return;
  ensure(N);
  lora_forward<T>(blas, out, saved_u(l, m), xd_, inp, A(l, m), B(l, m), dims(l, m, N, IN, OUT, drop_key), stream);
}

template <typename T>
void CudaLora<T>::backward(Blas& blas, int l, int m, T* dinp, const T* dout, const T* inp, int N, int IN, int OUT,
                           uint64_t drop_key, cudaStream_t stream) {
  if (!targets(l, m)) return;
  FW_CHECK(N == n_ && saved_, kInvalidArgument, "LoRA backward without its forward for " << N << " rows");
  lora_backward<T>(blas, dinp, dA(l, m), dB(l, m), du_, xd_, dout, inp, saved_u(l, m), A(l, m), B(l, m),
                   dims(l, m, N, IN, OUT, drop_key), stream);
}

template class CudaLora<float>;
template class CudaLora<__nv_bfloat16>;
template class CudaLora<__half>;

}  // namespace cuda
}  // namespace fw
