// gemv.cuh: matrix-vector products for decode at small batch, where cuBLAS
// spends more time launching (split-K GEMMs of one row become two or three
// kernels each) than reading the weights. One warp per output channel streams
// its weight row once in 16-byte loads and applies it to every input row.
// Several projections of the same input share one launch (q, k and v), the
// gate and up projections fuse with SwiGLU, the output projections add into
// the residual stream in place, and the RMSNorm in front of a projection can
// be folded into it (gemv_rmsnorm).
#pragma once

#include <cuda_runtime.h>

namespace fw {
namespace cuda {

constexpr int kGemvMaxRows = 8;  // input rows (the decode batch) one launch serves

// One projection: out (N, oc) (+)= x (N, IC) @ w (oc, IC)^T + bias (oc,
// nullptr: none).
template <typename T>
struct GemvOut {
  const T* w = nullptr;
  const T* bias = nullptr;
  T* out = nullptr;
  int oc = 0;
};

// Whether the kernels below take these shapes: N <= kGemvMaxRows rows and IC
// a multiple of 16 bytes of T (rows of x and w 16-byte aligned when their
// base pointers are; gemv checks the pointers too).
template <typename T>
bool gemv_fits(int N, int IC);

// Up to 3 projections of the same x in one launch (any number of channels:
// the grid is at most one wave of blocks, which loop over the rest). accumulate: out += ...
// (the residual stream), else out = ... Throws kInvalidArgument when the
// shapes or pointer alignment do not fit (gemv_fits first).
template <typename T>
void gemv(const T* x, int N, int IC, const GemvOut<T>* outs, int n_outs, bool accumulate, cudaStream_t stream);

// h (N, I) = silu(x @ wg^T) * (x @ wu^T), x (N, IC), wg and wu (I, IC): the
// gate and up projections and SwiGLU in one pass over both weight matrices.
template <typename T>
void gemv_swiglu(T* h, const T* x, const T* wg, const T* wu, int N, int IC, int I, cudaStream_t stream);

// The same two with x RMS-normalised first: RMSNorm(x) * norm_weight (IC),
// each element rounded to T as rmsnorm_forward stores it and 1/rms computed
// as it does, so the results are bit for bit rmsnorm_forward followed by
// gemv / gemv_swiglu, without that launch and the normalised rows' round
// trip through memory (the decode step's pre-attention, pre-MLP and final
// norms). norm_weight 16-byte aligned; no accumulation (x is the residual
// stream the outputs must not alias).
template <typename T>
void gemv_rmsnorm(const T* x, const T* norm_weight, float eps, int N, int IC, const GemvOut<T>* outs, int n_outs,
                  cudaStream_t stream);
template <typename T>
void gemv_swiglu_rmsnorm(T* h, const T* x, const T* norm_weight, float eps, const T* wg, const T* wu, int N, int IC,
                         int I, cudaStream_t stream);

// The decode step's attention inputs in one launch: gemv_rmsnorm of x onto
// q, k and v, then what rope_append_dpos does (decode.cuh): RoPE of q and k
// at positions *d_pos + t, and k and v appended to the caches at those
// positions (skipped outside [0, S)). Row n of x is (b, t) = (n / Tq, n % Tq).
// One warp computes both channels of a rotated pair (i, i + HS/2) of a q or
// k head, so it rotates them itself; the results (q, k, v and both caches)
// are bit for bit gemv_rmsnorm followed by rope_append_dpos, one launch
// fewer per layer.
template <typename T>
struct QkvRope {
  const T *wq = nullptr, *bq = nullptr, *wk = nullptr, *bk = nullptr, *wv = nullptr, *bv = nullptr;
  T *q = nullptr, *k = nullptr, *v = nullptr;  // (N, NH * HS), (N, KVH * HS), (N, KVH * HS)
  T *k_cache = nullptr, *v_cache = nullptr;    // (B, KVH, S, HS)
  const float *cos_t = nullptr, *sin_t = nullptr;
  const int* d_pos = nullptr;
  int NH = 0, KVH = 0, HS = 0, Tq = 0, S = 0;
};
template <typename T>
void gemv_rmsnorm_qkv_rope(const T* x, const T* norm_weight, float eps, int N, int IC, const QkvRope<T>& a,
                           cudaStream_t stream);

}  // namespace cuda
}  // namespace fw
