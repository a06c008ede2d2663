// quant.cu: INT8 weight-only matmul (matvec when N = 1) for decode.
//
// Decode at small batch is bound by reading the weights, so the kernel is
// organised around streaming each int8 weight row once: one warp per output
// channel, lanes reading 4 consecutive int8 (one 32-bit load, 128 bytes per
// warp per step), each weight group applied to up to kRows rows of the input
// held in registers as fp32 accumulators; the per-channel scale multiplies
// the finished dot product (the symmetric quantisation has no zero point).
// Larger N loops over row chunks, re-reading the row from L1/L2.
#include "cuda_common.cuh"
#include "launch.cuh"
#include "quant.cuh"

namespace fw {
namespace cuda {

constexpr int kWarps = 8;  // output channels per block
constexpr int kRows = 8;   // input rows per pass

template <typename T>
__global__ void __launch_bounds__(kWarps * 32)
    matmul_q8_kernel(T* out, const T* in, const int8_t* q, const float* scale, const T* bias, int N, int OC,
                     int IC) {
  const int lane = threadIdx.x & 31;
  const int o = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const int8_t* wrow = q + (size_t)o * IC;
  // the int8 row streams into L2 while the previous kernel finishes (launch.cuh)
  if (o < OC) warp_prefetch_l2(wrow, (size_t)IC);
  pdl_wait_then_trigger();
  if (o >= OC) return;
  const bool vec = (IC % 4) == 0;  // row starts 4-byte aligned
  for (int n0 = 0; n0 < N; n0 += kRows) {
    const int nr = min(kRows, N - n0);
    float acc[kRows];
#pragma unroll
    for (int r = 0; r < kRows; r++) acc[r] = 0.0f;
    if (vec) {
      const char4* w4 = reinterpret_cast<const char4*>(wrow);
      for (int g = lane; g < IC / 4; g += 32) {
        const char4 w = w4[g];
        const float w0 = w.x, w1 = w.y, w2 = w.z, w3 = w.w;
#pragma unroll
        for (int r = 0; r < kRows; r++) {
          if (r < nr) {
            const T* x = in + (size_t)(n0 + r) * IC + 4 * g;
            acc[r] += w0 * to_f32(x[0]) + w1 * to_f32(x[1]) + w2 * to_f32(x[2]) + w3 * to_f32(x[3]);
          }
        }
      }
    } else {
      for (int i = lane; i < IC; i += 32) {
        const float w = wrow[i];
#pragma unroll
        for (int r = 0; r < kRows; r++)
          if (r < nr) acc[r] += w * to_f32(in[(size_t)(n0 + r) * IC + i]);
      }
    }
    const float sc = scale[o];
    const float b = bias ? to_f32(bias[o]) : 0.0f;
#pragma unroll
    for (int r = 0; r < kRows; r++) {
      const float s = warp_sum(acc[r]);
      if (lane == 0 && r < nr) out[(size_t)(n0 + r) * OC + o] = from_f32<T>(s * sc + b);
    }
  }
}

template <typename T>
void matmul_q8(T* out, const T* in, const int8_t* q, const float* scale, const T* bias, int N, int OC, int IC,
               cudaStream_t stream) {
  FW_CHECK(N >= 0 && OC >= 0 && IC >= 0, kInvalidArgument,
           "matmul_q8: negative shape N=" << N << " OC=" << OC << " IC=" << IC);
  if (N == 0 || OC == 0) return;
  launch_pdl(matmul_q8_kernel<T>, dim3(ceil_div(OC, kWarps)), dim3(kWarps * 32), stream, out, in, q, scale, bias, N,
             OC, IC);
  FW_CUDA_CHECK_LAUNCH();
}

template void matmul_q8<float>(float*, const float*, const int8_t*, const float*, const float*, int, int, int,
                               cudaStream_t);
template void matmul_q8<bf16>(bf16*, const bf16*, const int8_t*, const float*, const bf16*, int, int, int,
                              cudaStream_t);
template void matmul_q8<f16>(f16*, const f16*, const int8_t*, const float*, const f16*, int, int, int,
                              cudaStream_t);

}  // namespace cuda
}  // namespace fw
