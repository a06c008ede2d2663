// decode.cuh: KV-cache decoding with the position in device memory, so that a
// whole decode step can be captured once in a CUDA graph and replayed per
// token (every kernel parameter stays fixed; only *d_pos changes, and the
// graph advances it itself with add_device_int).
//
// Shapes as in ops_attention.cuh / ops_rope.cuh: one layer's cache is
// k_cache, v_cache (B, KVH, S, HS) with capacity S; the Tq new tokens of a
// step are at positions *d_pos .. *d_pos + Tq - 1. The host cannot check the
// positions against S (they live on the device): kv_cache_append_dpos skips
// writes past the capacity and attention_decode_dpos never reads past it, but
// the caller keeps *d_pos + Tq <= S (and within the RoPE tables).
//
// Storage T is float, __nv_bfloat16 or __half, arithmetic fp32 (cuda_common.cuh).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace fw {
namespace cuda {

// x (B, Tq, H, HS) rotated in place (HF rotate_half, pairs (i, i + HS/2));
// token t is at position *d_pos + t. Same math as rope_forward.
template <typename T>
void rope_forward_dpos(T* x, const float* cos_t, const float* sin_t, int B, int Tq, int H, int HS, const int* d_pos,
                       cudaStream_t stream);

// Writes k, v (B, Tq, KVH, HS) into the caches (B, KVH, S, HS) at positions
// *d_pos + t. Positions outside [0, S) are skipped.
template <typename T>
void kv_cache_append_dpos(T* k_cache, T* v_cache, const T* k, const T* v, int B, int Tq, int KVH, int S, int HS,
                          const int* d_pos, cudaStream_t stream);

// rope_forward_dpos on q (B, Tq, NH, HS) and k (B, Tq, KVH, HS), then
// kv_cache_append_dpos of k and v, in one launch (the decode step's three
// launches before the attention); the same results.
template <typename T>
void rope_append_dpos(T* q, T* k, const T* v, T* k_cache, T* v_cache, const float* cos_t, const float* sin_t, int B,
                      int Tq, int NH, int KVH, int S, int HS, const int* d_pos, cudaStream_t stream);

// Floats of workspace attention_decode_dpos needs for these sizes.
size_t attention_decode_workspace_floats(int B, int Tq, int NH, int S, int HS);
// Ints of counters it needs (one per query row, B * Tq * NH).
size_t attention_decode_counters(int B, int Tq, int NH);

// out (B, Tq, NH, HS): query q (B, Tq, NH, HS) (post-RoPE) at position
// *d_pos + t attends to the cached keys 0..*d_pos + t (append first); query
// head h reads kv head h / (NH / KVH); scale 1/sqrt(HS). HS <= 128.
// Split-K ("flash-decoding") in one launch: the grid is sized by the
// capacity S, blocks past the live length exit at once, and the last block of
// each row to finish combines the row's partial softmax results, kept in
// workspace (attention_decode_workspace_floats floats). counters
// (attention_decode_counters ints) must be zero before the first call
// (cudaMemset); every call leaves them zero, so one set serves any number of
// calls, plain or graph-replayed, on one stream at a time.
template <typename T>
void attention_decode_dpos(T* out, const T* q, const T* k_cache, const T* v_cache, int B, int Tq, int NH, int KVH,
                           int S, int HS, const int* d_pos, float* workspace, int* counters, cudaStream_t stream);

// out[n] = argmax over v of logits (N, V) row n; ties go to the lowest index,
// NaNs never win (a row of NaNs gives 0). One block per row.
template <typename T>
void argmax_rows(int32_t* out, const T* logits, int N, int V, cudaStream_t stream);

// *d = value / *d += delta, as stream-ordered kernels (capturable in a graph).
void set_device_int(int* d, int value, cudaStream_t stream);
void add_device_int(int* d, int delta, cudaStream_t stream);

}  // namespace cuda
}  // namespace fw
