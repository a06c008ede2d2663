// quant.cpp: per-channel int8 quantisation and the int8 x fp32 matmul.
#include "quant.h"

#include <cblas.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "common.h"

namespace fw {

QuantMatrix quantize_q8(const float* w, int OC, int IC) {
  FW_CHECK(OC > 0 && IC > 0, kInvalidArgument, "quantize_q8: empty matrix (" << OC << ", " << IC << ")");
  QuantMatrix m;
  m.OC = OC;
  m.IC = IC;
  m.q.resize((size_t)OC * IC);
  m.scale.resize((size_t)OC);
#pragma omp parallel for schedule(static)
  for (int o = 0; o < OC; o++) {
    const float* row = w + (size_t)o * IC;
    float amax = 0.0f;
    for (int i = 0; i < IC; i++) amax = std::max(amax, std::fabs(row[i]));
    float scale = amax > 0.0f ? amax / 127.0f : 1.0f;
    float inv = 1.0f / scale;
    int8_t* q = m.q.data() + (size_t)o * IC;
    for (int i = 0; i < IC; i++) {
      float r = std::nearbyint(row[i] * inv);
      q[i] = (int8_t)std::max(-127.0f, std::min(127.0f, r));
    }
    m.scale[o] = scale;
  }
  return m;
}

std::vector<float> dequantize_q8(const QuantMatrix& m) {
  std::vector<float> w((size_t)m.OC * m.IC);
  for (int o = 0; o < m.OC; o++)
    for (int i = 0; i < m.IC; i++) w[(size_t)o * m.IC + i] = m.scale[o] * (float)m.q[(size_t)o * m.IC + i];
  return w;
}

// ----------------------------------------------------------------------------
// kernels: dot of one int8 weight row with `nr` fp32 input rows

static void dot_rows_scalar(const int8_t* q, const float* in, int IC, int nr, size_t in_stride, float* acc) {
  for (int r = 0; r < nr; r++) {
    const float* x = in + r * in_stride;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= IC; i += 4) {
      s0 += x[i] * q[i];
      s1 += x[i + 1] * q[i + 1];
      s2 += x[i + 2] * q[i + 2];
      s3 += x[i + 3] * q[i + 3];
    }
    for (; i < IC; i++) s0 += x[i] * q[i];
    acc[r] = (s0 + s1) + (s2 + s3);
  }
}

__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  return _mm_cvtss_f32(lo);
}

// Up to 4 input rows at once so each weight load is reused.
__attribute__((target("avx2,fma"))) static void dot_rows_avx2(const int8_t* q, const float* in, int IC, int nr, size_t in_stride,
                                                              float* acc) {
  int r = 0;
  for (; r + 4 <= nr; r += 4) {
    const float* x0 = in + (size_t)r * in_stride;
    const float* x1 = x0 + in_stride;
    const float* x2 = x1 + in_stride;
    const float* x3 = x2 + in_stride;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= IC; i += 8) {
      __m256 w = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(q + i))));
      a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x0 + i), a0);
      a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x1 + i), a1);
      a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x2 + i), a2);
      a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x3 + i), a3);
    }
    float s0 = hsum256(a0), s1 = hsum256(a1), s2 = hsum256(a2), s3 = hsum256(a3);
    for (; i < IC; i++) {
      s0 += x0[i] * q[i];
      s1 += x1[i] * q[i];
      s2 += x2[i] * q[i];
      s3 += x3[i] * q[i];
    }
    acc[r] = s0; acc[r + 1] = s1; acc[r + 2] = s2; acc[r + 3] = s3;
  }
  for (; r < nr; r++) {
    const float* x = in + (size_t)r * in_stride;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= IC; i += 16) {
      __m128i b = _mm_loadu_si128((const __m128i*)(q + i));
      __m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
      __m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)));
      a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), a0);
      a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), a1);
    }
    for (; i + 8 <= IC; i += 8) {
      __m256 w = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(q + i))));
      a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + i), a0);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < IC; i++) s += x[i] * q[i];
    acc[r] = s;
  }
}

bool quant_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

void matmul_q8(float* out, const float* in, const QuantMatrix& w, const float* bias, int N) {
  const int OC = w.OC, IC = w.IC;
  const bool avx2 = quant_has_avx2();
  const int RB = 4;  // input rows per pass
  // small problems (decode of a tiny layer) are not worth waking threads for
  const bool par = (size_t)OC * IC * N >= (1u << 15);
#pragma omp parallel for schedule(static) if (par)
  for (int o = 0; o < OC; o++) {
    const int8_t* q = w.q.data() + (size_t)o * IC;
    const float sc = w.scale[o];
    const float bo = bias ? bias[o] : 0.0f;
    float acc[RB];
    for (int n0 = 0; n0 < N; n0 += RB) {
      int nr = std::min(RB, N - n0);
      if (avx2) dot_rows_avx2(q, in + (size_t)n0 * IC, IC, nr, (size_t)IC, acc);
      else dot_rows_scalar(q, in + (size_t)n0 * IC, IC, nr, (size_t)IC, acc);
      for (int r = 0; r < nr; r++) out[(size_t)(n0 + r) * OC + o] = acc[r] * sc + bo;
    }
  }
}

void matmul_f32(float* out, const float* in, const float* w, const float* bias, int N, int OC, int IC) {
  if (N == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, OC, IC, 1.0f, w, IC, in, 1, 0.0f, out, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, in, IC, w, IC, 0.0f, out, OC);
  }
  if (bias) {
    for (int n = 0; n < N; n++)
      for (int o = 0; o < OC; o++) out[(size_t)n * OC + o] += bias[o];
  }
}

}  // namespace fw
