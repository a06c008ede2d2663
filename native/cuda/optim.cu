// optim.cu: the fused AdamW update and the gradient sum of squares.
//
// The update reads g, m, v and the fp32 master weight once, writes m, v, the
// master and (bf16 / fp16 training) the 16-bit working copy the forward pass
// reads, all in one kernel: the rounding happens once per step from the fp32
// master, so small updates are never lost to a 16-bit mantissa.
// The norm uses a fixed grid (kNormBlocks) and a fixed order, so clipping is
// deterministic, unlike an atomicAdd reduction. grad_unscale_check is the
// per-step half of fp16 dynamic loss scaling (LossScaler holds the policy).
#include "cuda_common.cuh"
#include "optim.cuh"

#include <cmath>

namespace fw {
namespace cuda {

constexpr int kNormBlocks = 1024;
constexpr int kNormThreads = 256;

template <typename TG, typename TP>
__global__ void adamw_kernel(float* master, TP* params_copy, float* m, float* v, const TG* grads, size_t n,
                             float lr, float b1, float b2, float eps, float wd, float gs, float c1, float c2) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const float g = to_f32(grads[i]) * gs;
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float p = master[i];
    p -= lr * ((mi * c1) / (sqrtf(vi * c2) + eps) + wd * p);
    master[i] = p;
    if (params_copy) params_copy[i] = from_f32<TP>(p);
  }
}

template <typename TG>
__global__ void sumsq_partial_kernel(float* partial, const TG* grads, size_t n) {
  __shared__ float shared[32];
  float s = 0.0f;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const float g = to_f32(grads[i]);
    s += g * g;
  }
  s = block_sum(s, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_final_kernel(float* out, const float* partial, int n) {
  __shared__ float shared[32];
  float s = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) *out = s;
}

template <typename TG>
__global__ void grad_unscale_check_kernel(TG* grads, size_t n, float inv_scale, int* found_inf) {
  bool bad = false;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const float g = to_f32(grads[i]);
    bad |= !isfinite(g);
    if (inv_scale != 1.0f) grads[i] = from_f32<TG>(g * inv_scale);  // 1: a check only, nothing to write
  }
  if (__syncthreads_or(bad) && threadIdx.x == 0) *found_inf = 1;  // benign race: every writer writes 1
}

template <typename TG>
void grad_unscale_check(TG* grads, size_t n, float inv_scale, int* found_inf, cudaStream_t stream) {
  if (n == 0) return;
  unsigned grid = ceil_div(n, 256);
  if (grid > 4096) grid = 4096;
  grad_unscale_check_kernel<TG><<<grid, 256, 0, stream>>>(grads, n, inv_scale, found_inf);
  FW_CUDA_CHECK_LAUNCH();
}

template <typename TG, typename TP>
static void adamw_launch(float* master, TP* params_copy, float* m, float* v, const TG* grads, size_t n,
                         const AdamWStep& s, cudaStream_t stream) {
  FW_CHECK(s.t >= 1, kInvalidArgument, "adamw_update: step t must be >= 1, got " << s.t);
  if (n == 0) return;
  // Bias corrections in double on the host, as on the CPU.
  const float c1 = (float)(1.0 / (1.0 - std::pow((double)s.beta1, (double)s.t)));
  const float c2 = (float)(1.0 / (1.0 - std::pow((double)s.beta2, (double)s.t)));
  unsigned grid = ceil_div(n, 256);
  if (grid > 65535) grid = 65535;
  adamw_kernel<TG, TP><<<grid, 256, 0, stream>>>(master, params_copy, m, v, grads, n, s.lr, s.beta1, s.beta2,
                                                 s.eps, s.weight_decay, s.grad_scale, c1, c2);
  FW_CUDA_CHECK_LAUNCH();
}

template <typename TG>
void adamw_update(float* master, bf16* params_bf16, float* m, float* v, const TG* grads, size_t n,
                  const AdamWStep& s, cudaStream_t stream) {
  adamw_launch(master, params_bf16, m, v, grads, n, s, stream);
}

template <typename TG>
void adamw_update(float* master, f16* params_f16, float* m, float* v, const TG* grads, size_t n, const AdamWStep& s,
                  cudaStream_t stream) {
  adamw_launch(master, params_f16, m, v, grads, n, s, stream);
}

size_t global_norm_scratch_floats() { return kNormBlocks; }

template <typename TG>
void grad_sumsq(float* out, float* scratch, const TG* grads, size_t n, cudaStream_t stream) {
  sumsq_partial_kernel<TG><<<kNormBlocks, kNormThreads, 0, stream>>>(scratch, grads, n);
  FW_CUDA_CHECK_LAUNCH();
  sum_final_kernel<<<1, 1024, 0, stream>>>(out, scratch, kNormBlocks);
  FW_CUDA_CHECK_LAUNCH();
}

template void adamw_update<float>(float*, bf16*, float*, float*, const float*, size_t, const AdamWStep&,
                                  cudaStream_t);
template void adamw_update<bf16>(float*, bf16*, float*, float*, const bf16*, size_t, const AdamWStep&,
                                 cudaStream_t);
template void grad_unscale_check<float>(float*, size_t, float, int*, cudaStream_t);
template void grad_unscale_check<bf16>(bf16*, size_t, float, int*, cudaStream_t);
template void grad_unscale_check<__half>(__half*, size_t, float, int*, cudaStream_t);
template void grad_sumsq<float>(float*, float*, const float*, size_t, cudaStream_t);
template void grad_sumsq<bf16>(float*, float*, const bf16*, size_t, cudaStream_t);
template void adamw_update<f16>(float*, f16*, float*, float*, const f16*, size_t, const AdamWStep&, cudaStream_t);
template void grad_sumsq<f16>(float*, float*, const f16*, size_t, cudaStream_t);

}  // namespace cuda
}  // namespace fw
