// cuda_test_util.h: what the GPU parity tests share: a skip when no GPU is
// present, device buffers that convert to and from fp32 on the host, bf16
// rounding of host data and the parity check.
//
// Parity (as llm.c's test_gpt2 and ggml's test-backend-ops): each op runs on
// the CPU backend (fw::, fp32) and on the GPU (fw::cuda::) from the same
// inputs; for bf16 the inputs are rounded to bf16 first so the CPU sees the
// very values the GPU does. The error of a tensor is
// max |gpu - cpu| / max |cpu| (relative to the tensor's scale, so elements
// near zero do not blow it up); the bound is 1e-4 in fp32, 1e-2 in bf16.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

#include "cuda_check.h"
#include "train_rng.h"

namespace fwcuda_test {

using bf16 = __nv_bfloat16;
using f16 = __half;

inline bool have_gpu() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return n > 0;
}

// No device: skip, or fail when FW_CUDA_TESTS_REQUIRE_GPU is set (as
// run_gpu_checks.sh does, so a GPU run can never pass by skipping).
#define FW_REQUIRE_GPU()                                                       \
  do {                                                                         \
    if (!::fwcuda_test::have_gpu()) {                                          \
      if (std::getenv("FW_CUDA_TESTS_REQUIRE_GPU")) GTEST_FAIL() << "no CUDA device"; \
      GTEST_SKIP() << "no CUDA device";                                        \
    }                                                                          \
  } while (0)

template <typename T>
constexpr double tol() {
  return std::is_same<T, float>::value ? 1e-4 : 1e-2;
}
template <typename T>
constexpr const char* type_name() {
  return std::is_same<T, float>::value ? "fp32" : std::is_same<T, bf16>::value ? "bf16" : "fp16";
}

inline float to_float(float x) { return x; }
inline float to_float(bf16 x) { return __bfloat162float(x); }
inline float to_float(f16 x) { return __half2float(x); }
template <typename T>
T from_float(float x);
template <>
inline float from_float<float>(float x) { return x; }
template <>
inline bf16 from_float<bf16>(float x) { return __float2bfloat16_rn(x); }
template <>
inline f16 from_float<f16>(float x) { return __float2half_rn(x); }

// x rounded to what storage type T can hold (identity for float).
template <typename T>
std::vector<float> rounded(std::vector<float> x) {
  for (float& v : x) v = to_float(from_float<T>(v));
  return x;
}

inline std::vector<float> randn(size_t n, uint64_t seed, double scale = 1.0) {
  fw::Rng r(seed);
  std::vector<float> v(n);
  for (float& x : v) x = (float)(r.normal() * scale);
  return v;
}

// A device buffer of n elements of T, zeroed.
template <typename T>
class Dev {
 public:
  explicit Dev(size_t n) : n_(n) {
    FW_CUDA_CHECK(cudaMalloc(&p_, std::max<size_t>(n, 1) * sizeof(T)));
    FW_CUDA_CHECK(cudaMemset(p_, 0, std::max<size_t>(n, 1) * sizeof(T)));
  }
  // From host values of T itself (ints, int8, fp32 tables).
  explicit Dev(const std::vector<T>& h) : Dev(h.size()) {
    FW_CUDA_CHECK(cudaMemcpy(p_, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~Dev() { cudaFree(p_); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;

  // From fp32 host values, converted to T.
  static std::unique_ptr<Dev> of(const std::vector<float>& h) {
    std::vector<T> t(h.size());
    for (size_t i = 0; i < h.size(); i++) t[i] = from_float<T>(h[i]);
    return std::make_unique<Dev>(t);
  }
  std::vector<T> host() const {
    std::vector<T> h(n_);
    FW_CUDA_CHECK(cudaDeviceSynchronize());  // kernel errors surface here
    FW_CUDA_CHECK(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  std::vector<float> f32() const {
    std::vector<T> h = host();
    std::vector<float> f(n_);
    for (size_t i = 0; i < n_; i++) f[i] = to_float(h[i]);
    return f;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

template <typename T>
std::unique_ptr<Dev<T>> dev(const std::vector<float>& h) {
  return Dev<T>::of(h);
}

// Print "OK"/"NOT OK" with the error (llm.c style) and check the bound. Also
// fails a vacuous comparison (an all-zero reference).
inline void expect_parity(const std::string& what, const std::vector<float>& gpu, const std::vector<float>& cpu,
                          double bound) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < cpu.size(); i++) {
    const double d = std::fabs((double)gpu[i] - cpu[i]);
    max_diff = std::isnan(d) ? INFINITY : std::max(max_diff, d);
    max_ref = std::max(max_ref, std::fabs((double)cpu[i]));
  }
  const double rel = max_diff / std::max(max_ref, 1e-30);
  std::printf("%-8s %-40s max|diff| %.3e  rel %.3e  (bound %.0e)\n", rel <= bound ? "OK" : "NOT OK", what.c_str(),
              max_diff, rel, bound);
  EXPECT_LE(rel, bound) << what;
  EXPECT_GT(max_ref, 0.0) << what << ": reference is all zeros, the check would be vacuous";
}

}  // namespace fwcuda_test
