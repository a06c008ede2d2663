// quant.h: INT8 weight-only quantisation for inference.
//
// A Linear weight W (OC, IC) is stored as int8 q (OC, IC) plus one fp32 scale
// per output channel: scale[o] = max_i |W[o,i]| / 127, q = round(W / scale),
// symmetric (no zero point). Activations stay fp32: out[n,o] = scale[o] *
// sum_i in[n,i] * q[o,i] (+ bias[o]). The weights shrink 4x, which is what
// memory-bound single-stream decode pays for. The kernel has an AVX2+FMA path
// chosen at run time (the build targets x86-64-v2) and a portable fallback.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace fw {

struct QuantMatrix {
  int OC = 0, IC = 0;
  std::vector<int8_t> q;     // (OC, IC)
  std::vector<float> scale;  // (OC)
  size_t bytes() const { return q.size() + scale.size() * 4; }
};

// w: (OC, IC) fp32 -> per-output-channel symmetric int8.
QuantMatrix quantize_q8(const float* w, int OC, int IC);
// (OC, IC) fp32 reconstruction (for tests / error measurements).
std::vector<float> dequantize_q8(const QuantMatrix& m);

// out: (N, OC) = in: (N, IC) @ dequant(W)^T + bias (bias may be nullptr).
// Parallel over output channels (OpenMP).
void matmul_q8(float* out, const float* in, const QuantMatrix& w, const float* bias, int N);

// out: (N, OC) = in: (N, IC) @ W^T + bias, W (OC, IC) fp32, via BLAS.
void matmul_f32(float* out, const float* in, const float* w, const float* bias, int N, int OC, int IC);

// true when the AVX2 kernels are in use on this CPU
bool quant_has_avx2();

}  // namespace fw
