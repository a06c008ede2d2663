// ops_attention.h: causal grouped-query scaled dot-product attention.
//
// Query head h reads key/value head h / (NH/KVH). Scores are scaled by
// 1/sqrt(HS); the softmax probabilities att (B, NH, T, T) are kept for
// backward (zeros above the diagonal).
#pragma once

namespace fw {

// out (B, T, NH, HS), att (B, NH, T, T); q (B, T, NH, HS) post-RoPE,
// k, v (B, T, KVH, HS) (k post-RoPE).
template <typename T>
void attention_forward(T* out, T* att, const T* q, const T* k, const T* v, int B, int T_, int NH, int KVH,
                       int HS);

// dq (B, T, NH, HS), dk, dv (B, T, KVH, HS): overwritten. scratch: unused
// (kept for the interface; each thread allocates its own (T, T) buffer).
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, T* scratch, const T* dout, const T* att, const T* q, const T* k,
                        const T* v, int B, int T_, int NH, int KVH, int HS);

// One head against an arbitrary key range, for decoding with a KV cache:
// o (Tq, HS; row stride ldo) = softmax(scale q k^T + causal mask) v with
// q (Tq, HS; ldq), k, v (Tk, HS; ldk / ldv), P (Tq, Tk) scratch. Query row t
// sits at position offset + t and sees keys 0..offset+t. Single-threaded
// when called inside an OpenMP parallel region (call it once per head there).
template <typename T>
void attention_head_forward(T* o, int ldo, T* P, const T* q, int ldq, const T* k, int ldk, const T* v, int ldv,
                            int Tq, int Tk, int HS, int offset);

}  // namespace fw
