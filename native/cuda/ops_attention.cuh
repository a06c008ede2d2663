// ops_attention.cuh: causal grouped-query attention on the GPU
// (engine/ops_attention.h), tiled with an online softmax: the (T, T) score
// matrix is never stored. Query head h reads kv head h / (NH / KVH); scores
// are scaled by 1/sqrt(HS). Instead of the CPU's att (B, NH, T, T) the
// forward keeps lse (B, NH, T), the log-sum-exp of each query row's scaled
// scores, from which backward recomputes the probabilities tile by tile.
// HS <= 128 (kAttentionMaxHS).
#pragma once

#include <cuda_runtime.h>

namespace fw {
namespace cuda {

constexpr int kAttentionMaxHS = 128;

// out (B, T, NH, HS), lse (B, NH, T) fp32; q (B, T, NH, HS) post-RoPE,
// k, v (B, T, KVH, HS) (k post-RoPE).
template <typename T>
void attention_forward(T* out, float* lse, const T* q, const T* k, const T* v, int B, int T_, int NH, int KVH,
                       int HS, cudaStream_t stream);

// dq (B, T, NH, HS), dk, dv (B, T, KVH, HS): overwritten. out and lse are the
// forward's; scratch: (B, NH, T) fp32 (rowsum(dout * out)). Deterministic: dk,
// dv are summed over the query heads of a group inside one block, dq by a
// second kernel, no atomics.
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, float* scratch, const T* dout, const T* out, const float* lse,
                        const T* q, const T* k, const T* v, int B, int T_, int NH, int KVH, int HS,
                        cudaStream_t stream);

// Decoding with a KV cache. One layer's cache is k_cache, v_cache
// (B, KVH, S, HS) (a slice of the engine's (L, B, KVH, S, HS) KVCacheT).
// Append Tq new tokens k, v (B, Tq, KVH, HS) at positions pos0..pos0+Tq-1.
template <typename T>
void kv_cache_append(T* k_cache, T* v_cache, const T* k, const T* v, int B, int Tq, int KVH, int S, int HS,
                     int pos0, cudaStream_t stream);

// out (B, Tq, NH, HS) for queries q (B, Tq, NH, HS) at positions pos0 + t
// against cached keys 0..pos0+t (append first). lse (B, NH, Tq) or nullptr.
template <typename T>
void attention_cached_forward(T* out, float* lse, const T* q, const T* k_cache, const T* v_cache, int B, int Tq,
                              int NH, int KVH, int S, int HS, int pos0, cudaStream_t stream);

}  // namespace cuda
}  // namespace fw
