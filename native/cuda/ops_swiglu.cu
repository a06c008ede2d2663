// ops_swiglu.cu: SwiGLU forward and fused backward, elementwise.
//
// silu(g) = g * sigmoid(g); d silu / dg = s (1 + g (1 - s)) with s = sigmoid(g).
// The backward reads gate, up and dout once and writes both gradients, where
// an unfused version would recompute sigmoid and read gate twice. When the
// buffers allow it (16-byte aligned, length a multiple of 8 bf16 / 4 float)
// each thread moves 16 bytes per access; the arithmetic per element is the
// same either way, so both paths give the same bits.
#include "cuda_common.cuh"
#include "launch.cuh"
#include "ops_swiglu.cuh"

#include <type_traits>

namespace fw {
namespace cuda {

// One element's forward and backward, shared by the scalar and packed kernels.
template <typename T>
__device__ __forceinline__ T swiglu_one(T gate, T up) {
  const float g = to_f32(gate);
  const float s = 1.0f / (1.0f + __expf(-g));
  return from_f32<T>(g * s * to_f32(up));
}
template <typename T>
__device__ __forceinline__ void swiglu_grad_one(T& dgate, T& dup, T dout, T gate, T up) {
  const float g = to_f32(gate), u = to_f32(up), d = to_f32(dout);
  const float s = 1.0f / (1.0f + __expf(-g));
  dgate = from_f32<T>(d * u * s * (1.0f + g * (1.0f - s)));
  dup = from_f32<T>(d * g * s);
}

// E = T: one element per step; E = Pack<T>: kPack<T> elements per step.
template <typename T, typename E>
__global__ void swiglu_forward_kernel(E* out, const E* gate, const E* up, size_t n) {
  pdl_wait_then_trigger();
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    if constexpr (std::is_same<E, T>::value) {
      out[i] = swiglu_one(gate[i], up[i]);
    } else {
      const E g = gate[i], u = up[i];
      E o;
#pragma unroll
      for (int k = 0; k < kPack<T>; k++) o.v[k] = swiglu_one(g.v[k], u.v[k]);
      out[i] = o;
    }
  }
}

template <typename T, typename E>
__global__ void swiglu_backward_kernel(E* dgate, E* dup, const E* dout, const E* gate, const E* up, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    if constexpr (std::is_same<E, T>::value) {
      swiglu_grad_one(dgate[i], dup[i], dout[i], gate[i], up[i]);
    } else {
      const E d = dout[i], g = gate[i], u = up[i];
      E dg, du;
#pragma unroll
      for (int k = 0; k < kPack<T>; k++) swiglu_grad_one(dg.v[k], du.v[k], d.v[k], g.v[k], u.v[k]);
      dgate[i] = dg;
      dup[i] = du;
    }
  }
}

template <typename T, typename... Ptrs>
bool packable(size_t N, const Ptrs*... p) {
  return N % kPack<T> == 0 && (aligned16(p) && ...);
}

static unsigned grid_for(size_t n) {
  unsigned g = ceil_div(n, 256);
  return g > 65535 ? 65535 : g;
}

template <typename T>
void swiglu_forward(T* out, const T* gate, const T* up, size_t N, cudaStream_t stream) {
  if (N == 0) return;
  if (packable<T>(N, out, gate, up)) {
    using P = Pack<T>;
    const size_t n = N / kPack<T>;
    launch_pdl(swiglu_forward_kernel<T, P>, dim3(grid_for(n)), dim3(256), stream, reinterpret_cast<P*>(out),
               reinterpret_cast<const P*>(gate), reinterpret_cast<const P*>(up), n);
  } else {
    launch_pdl(swiglu_forward_kernel<T, T>, dim3(grid_for(N)), dim3(256), stream, out, gate, up, N);
  }
  FW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, size_t N, cudaStream_t stream) {
  if (N == 0) return;
  if (packable<T>(N, dgate, dup, dout, gate, up)) {
    using P = Pack<T>;
    const size_t n = N / kPack<T>;
    swiglu_backward_kernel<T, P><<<grid_for(n), 256, 0, stream>>>(
        reinterpret_cast<P*>(dgate), reinterpret_cast<P*>(dup), reinterpret_cast<const P*>(dout),
        reinterpret_cast<const P*>(gate), reinterpret_cast<const P*>(up), n);
  } else {
    swiglu_backward_kernel<T, T><<<grid_for(N), 256, 0, stream>>>(dgate, dup, dout, gate, up, N);
  }
  FW_CUDA_CHECK_LAUNCH();
}

template void swiglu_forward<float>(float*, const float*, const float*, size_t, cudaStream_t);
template void swiglu_forward<bf16>(bf16*, const bf16*, const bf16*, size_t, cudaStream_t);
template void swiglu_forward<f16>(f16*, const f16*, const f16*, size_t, cudaStream_t);
template void swiglu_backward<float>(float*, float*, const float*, const float*, const float*, size_t, cudaStream_t);
template void swiglu_backward<bf16>(bf16*, bf16*, const bf16*, const bf16*, const bf16*, size_t, cudaStream_t);
template void swiglu_backward<f16>(f16*, f16*, const f16*, const f16*, const f16*, size_t, cudaStream_t);

}  // namespace cuda
}  // namespace fw
