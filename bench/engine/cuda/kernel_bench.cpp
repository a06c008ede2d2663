// kernel_bench.cpp: times the engine's CUDA kernels at the shapes of the
// 124M Llama-style benchmark config (bench.py) and prints one JSON object per
// line: {"op": ..., "ms": ..., "shape": ...}. bench.py runs it next to the
// same ops in PyTorch. Built by native/tests/cuda/CMakeLists.txt as
// fw_cuda_kernel_bench (needs fw_cuda, so cuBLAS).
//
//   fw_cuda_kernel_bench [B T]     (default 8 1024)
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "cuda_check.h"
#include "gemm_cublas.h"
#include "gemv.cuh"
#include "ops_attention.cuh"
#include "ops_loss.cuh"
#include "ops_rmsnorm.cuh"
#include "ops_swiglu.cuh"
#include "optim.cuh"
#include "quant.cuh"

namespace {

using bf16 = __nv_bfloat16;

// The benchmark model (keep in sync with bench.py CONFIG).
constexpr int C = 768, L = 12, NH = 12, KVH = 12, HS = 64, I = 2048, V = 50304;

template <typename T>
T* dalloc(size_t n) {
  T* p = nullptr;
  FW_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
  FW_CUDA_CHECK(cudaMemset(p, 0, n * sizeof(T)));  // zeros: timing only, values do not matter
  return p;
}

// Median-free simple timing: warm up, then the mean of `iters` runs.
double time_ms(const std::function<void()>& f, int iters = 20) {
  for (int i = 0; i < 3; i++) f();
  cudaEvent_t a, b;
  FW_CUDA_CHECK(cudaEventCreate(&a));
  FW_CUDA_CHECK(cudaEventCreate(&b));
  FW_CUDA_CHECK(cudaEventRecord(a));
  for (int i = 0; i < iters; i++) f();
  FW_CUDA_CHECK(cudaEventRecord(b));
  FW_CUDA_CHECK(cudaEventSynchronize(b));
  float ms = 0;
  FW_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / iters;
}

void report(const char* op, const std::string& shape, double ms) {
  std::printf("{\"op\": \"%s\", \"shape\": \"%s\", \"ms\": %.4f}\n", op, shape.c_str(), ms);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const int B = argc > 2 ? std::atoi(argv[1]) : 8;
    const int T = argc > 2 ? std::atoi(argv[2]) : 1024;
    const int N = B * T;
    const std::string bt = "B" + std::to_string(B) + " T" + std::to_string(T);

    bf16* q = dalloc<bf16>((size_t)N * NH * HS);
    bf16* k = dalloc<bf16>((size_t)N * KVH * HS);
    bf16* v = dalloc<bf16>((size_t)N * KVH * HS);
    bf16* o = dalloc<bf16>((size_t)N * NH * HS);
    bf16* dq = dalloc<bf16>((size_t)N * NH * HS);
    bf16* dk = dalloc<bf16>((size_t)N * KVH * HS);
    bf16* dv = dalloc<bf16>((size_t)N * KVH * HS);
    float* lse = dalloc<float>((size_t)B * NH * T);
    float* scratch = dalloc<float>((size_t)B * NH * T);
    report("attention_forward", bt + " NH12 HS64",
           time_ms([&] { fw::cuda::attention_forward(o, lse, q, k, v, B, T, NH, KVH, HS, 0); }));
    report("attention_backward", bt + " NH12 HS64", time_ms([&] {
             fw::cuda::attention_backward(dq, dk, dv, scratch, o, o, lse, q, k, v, B, T, NH, KVH, HS, 0);
           }));

    bf16* x = dalloc<bf16>((size_t)N * C);
    bf16* y = dalloc<bf16>((size_t)N * C);
    bf16* w = dalloc<bf16>(C);
    float* rstd = dalloc<float>(N);
    float* norm_scratch = dalloc<float>(fw::cuda::rmsnorm_backward_scratch_floats(N, C));
    report("rmsnorm_forward", bt + " C768",
           time_ms([&] { fw::cuda::rmsnorm_forward(y, rstd, x, w, N, C, 1e-5, 0); }));
    report("rmsnorm_backward", bt + " C768",
           time_ms([&] { fw::cuda::rmsnorm_backward(x, w, y, x, w, rstd, N, C, norm_scratch, 0); }));

    bf16* g = dalloc<bf16>((size_t)N * I);
    bf16* u = dalloc<bf16>((size_t)N * I);
    bf16* h = dalloc<bf16>((size_t)N * I);
    report("swiglu_forward", bt + " I2048", time_ms([&] { fw::cuda::swiglu_forward(h, g, u, (size_t)N * I, 0); }));
    report("swiglu_backward", bt + " I2048",
           time_ms([&] { fw::cuda::swiglu_backward(g, u, h, g, u, (size_t)N * I, 0); }));

    bf16* logits = dalloc<bf16>((size_t)N * V);
    int32_t* targets = dalloc<int32_t>(N);
    float* losses = dalloc<float>(N);
    report("crossentropy_forward_backward", bt + " V50304", time_ms([&] {
             fw::cuda::crossentropy_forward_backward(logits, losses, nullptr, targets, N, V, 1.0f / N, 0);
           }));

    fw::cuda::Blas blas;
    bf16* wq = dalloc<bf16>((size_t)I * C);
    report("gemm_bf16 x@W^T (N,768)->(N,2048)", bt, time_ms([&] {
             fw::cuda::gemm<bf16>(blas, false, true, N, I, C, 1.0f, x, C, wq, C, 0.0f, h, I, 0);
           }));
    cudaFree(logits);

    const size_t P = 124000000;  // parameters of the benchmark model, about
    float* master = dalloc<float>(P);
    float* m = dalloc<float>(P);
    float* vv = dalloc<float>(P);
    bf16* pb = dalloc<bf16>(P);
    bf16* grads = dalloc<bf16>(P);
    fw::cuda::AdamWStep s;
    report("adamw_update", "124M params", time_ms([&] { fw::cuda::adamw_update(master, pb, m, vv, grads, P, s, 0); }));

    // Decode: int8 weight-only matvec of one layer's MLP up projection.
    int8_t* wq8 = dalloc<int8_t>((size_t)I * C);
    float* scale = dalloc<float>(I);
    for (int nb : {1, 64}) {
      report("matmul_q8 (768->2048)", "N" + std::to_string(nb),
             time_ms([&] { fw::cuda::matmul_q8<bf16>(h, x, wq8, scale, nullptr, nb, I, C, 0); }, 200));
    }
    // Decode projections at batch 1 and 8: the warp-per-channel GEMV (q/k/v
    // in one launch; the lm_head) against cuBLAS on the same shapes.
    {
      bf16* wqkv = dalloc<bf16>((size_t)3 * C * C);
      bf16* wlm = dalloc<bf16>((size_t)V * C);
      bf16* xo = dalloc<bf16>((size_t)8 * V);
      for (int nb : {1, 8}) {
        const std::string rows = "N" + std::to_string(nb);
        const fw::cuda::GemvOut<bf16> qkv[3] = {{wqkv, nullptr, xo, C},
                                                 {wqkv + (size_t)C * C, nullptr, xo + (size_t)nb * C, C},
                                                 {wqkv + (size_t)2 * C * C, nullptr, xo + (size_t)2 * nb * C, C}};
        report("gemv q/k/v (768->3x768)", rows,
               time_ms([&] { fw::cuda::gemv(x, nb, C, qkv, 3, false, 0); }, 200));
        report("cublas q/k/v (768->3x768, 3 gemms)", rows, time_ms([&] {
                 for (int k = 0; k < 3; k++)
                   fw::cuda::gemm<bf16>(blas, false, true, nb, C, C, 1.0f, x, C, wqkv + (size_t)k * C * C, C, 0.0f,
                                        xo + (size_t)k * nb * C, C, 0);
               }, 200));
        const fw::cuda::GemvOut<bf16> lm = {wlm, nullptr, xo, V};
        report("gemv lm_head (768->50304)", rows, time_ms([&] { fw::cuda::gemv(x, nb, C, &lm, 1, false, 0); }, 50));
        report("cublas lm_head (768->50304)", rows, time_ms([&] {
                 fw::cuda::gemm<bf16>(blas, false, true, nb, V, C, 1.0f, x, C, wlm, C, 0.0f, xo, V, 0);
               }, 50));
      }
    }
    // Decode attention against a 1024-token cache, one new token.
    for (int nb : {1, 64}) {
      const int S = 1024;
      bf16* kc = dalloc<bf16>((size_t)nb * KVH * S * HS);
      bf16* vc = dalloc<bf16>((size_t)nb * KVH * S * HS);
      report("attention_cached_forward", "B" + std::to_string(nb) + " pos 1023", time_ms([&] {
               fw::cuda::attention_cached_forward(o, nullptr, q, kc, vc, nb, 1, NH, KVH, S, HS, S - 1, 0);
             }, 200));
      cudaFree(kc);
      cudaFree(vc);
    }
    FW_CUDA_CHECK(cudaDeviceSynchronize());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fw_cuda_kernel_bench: %s\n", e.what());
    return 1;
  }
}
