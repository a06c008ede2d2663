// ops_rope.cu: RoPE forward and backward, one thread per rotated pair.
//
// The tables are fp32 whatever the storage type: bf16 angles would put a
// rounding error of ~1e-2 rad on the far positions. Backward is the same
// rotation with sin negated (a rotation's inverse is its transpose), so one
// kernel serves both.
#include "cuda_common.cuh"
#include "ops_rope.cuh"

namespace fw {
namespace cuda {

__global__ void rope_tables_kernel(float* cos_t, float* sin_t, int S, int HS, double theta) {
  const int half = HS / 2;
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= S * half) return;
  const int p = idx / half, i = idx % half;
  const double a = p * pow(theta, -2.0 * i / HS);
  cos_t[idx] = (float)cos(a);
  sin_t[idx] = (float)sin(a);
}

// One thread per (b, t, h, i < HS/2). sign = +1 forward, -1 backward.
template <typename T>
__global__ void rope_kernel(T* x, const float* cos_t, const float* sin_t, int B, int T_, int H, int HS, int pos0,
                            float sign) {
  const int half = HS / 2;
  const size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (idx >= (size_t)B * T_ * H * half) return;
  const int i = idx % half;
  const size_t row = idx / half;  // (b, t, h) flattened
  const int t = (row / H) % T_;
  const size_t tab = (size_t)(pos0 + t) * half + i;
  const float c = cos_t[tab], s = sign * sin_t[tab];
  T* v = x + row * HS;
  const float x1 = to_f32(v[i]), x2 = to_f32(v[i + half]);
  v[i] = from_f32<T>(x1 * c - x2 * s);
  v[i + half] = from_f32<T>(x2 * c + x1 * s);
}

void rope_tables(float* cos_t, float* sin_t, int S, int HS, double theta, cudaStream_t stream) {
  FW_CHECK(HS % 2 == 0, kInvalidArgument, "rope_tables: head_dim " << HS << " must be even");
  if (S == 0) return;
  rope_tables_kernel<<<ceil_div((size_t)S * (HS / 2), 256), 256, 0, stream>>>(cos_t, sin_t, S, HS, theta);
  FW_CUDA_CHECK_LAUNCH();
}

template <typename T>
static void rope_launch(T* x, const float* cos_t, const float* sin_t, int B, int T_, int H, int HS, int pos0,
                        float sign, cudaStream_t stream) {
  FW_CHECK(HS % 2 == 0, kInvalidArgument, "rope: head_dim " << HS << " must be even");
  const size_t n = (size_t)B * T_ * H * (HS / 2);
  if (n == 0) return;
  rope_kernel<T><<<ceil_div(n, 256), 256, 0, stream>>>(x, cos_t, sin_t, B, T_, H, HS, pos0, sign);
  FW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void rope_forward(T* x, const float* cos_t, const float* sin_t, int B, int T_, int H, int HS, int pos0,
                  cudaStream_t stream) {
  rope_launch(x, cos_t, sin_t, B, T_, H, HS, pos0, 1.0f, stream);
}

template <typename T>
void rope_backward(T* dx, const float* cos_t, const float* sin_t, int B, int T_, int H, int HS, int pos0,
                   cudaStream_t stream) {
  rope_launch(dx, cos_t, sin_t, B, T_, H, HS, pos0, -1.0f, stream);
}

template void rope_forward<float>(float*, const float*, const float*, int, int, int, int, int, cudaStream_t);
template void rope_forward<bf16>(bf16*, const float*, const float*, int, int, int, int, int, cudaStream_t);
template void rope_forward<f16>(f16*, const float*, const float*, int, int, int, int, int, cudaStream_t);
template void rope_backward<float>(float*, const float*, const float*, int, int, int, int, int, cudaStream_t);
template void rope_backward<bf16>(bf16*, const float*, const float*, int, int, int, int, int, cudaStream_t);
template void rope_backward<f16>(f16*, const float*, const float*, int, int, int, int, int, cudaStream_t);

}  // namespace cuda
}  // namespace fw
