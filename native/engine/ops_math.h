// ops_math.h: a vectorisable exp for the float hot loops (softmax, SiLU).
//
// std::exp on float compiles to a call per element; this Cephes-style
// version (range reduction x = n ln2 + r, degree-6 polynomial for e^r, 2^n by
// building the exponent bits) is plain arithmetic, so `#pragma omp simd`
// loops vectorise it. Max relative error ~2e-7 (a couple of float ulps) on
// [-87, 88]; inputs are clamped to that range (exp(-87) ~ 1.6e-38, not 0).
// The double overload is std::exp: the double model is the exact reference
// the finite-difference tests rely on.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

// Hot float loops get AVX2 and AVX-512 clones picked at load time (ifunc);
// the build targets x86-64-v2 for portability, which alone means 4-lane SSE.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define FW_TARGET_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define FW_TARGET_CLONES
#endif

namespace fw {

#pragma omp declare simd notinbranch
inline float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f - n * -2.12194440e-4f;  // ln2 split hi/lo
  float z = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * z + r + 1.0f;
  // 2^n from its exponent bits; unsigned so a NaN input (whose n is
  // garbage) cannot make a signed shift; p is NaN then anyway.
  uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

inline double fast_exp(double x) { return std::exp(x); }

}  // namespace fw
