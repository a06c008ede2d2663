// ops_attention_tc.cuh: internal to ops_attention.cu. Tensor-core (mma.sync
// m16n8k16 bf16, fp32 accumulate) flash-attention-2 kernels for the training
// layout q (B, T, NH, HS), k, v (B, T, KVH, HS), bf16, HS 64 or 128. The
// public entry points stay attention_forward / attention_backward in
// ops_attention.cuh, which dispatch here when attention_tc_supported() holds.
#pragma once

#include "cuda_common.cuh"

namespace fw {
namespace cuda {

// HS 64 or 128 and every pointer 16-byte aligned (the kernels move 16-byte
// vectors). Pass nullptr for pointers that do not exist in the call.
bool attention_tc_supported(int HS, const void* p0, const void* p1, const void* p2, const void* p3,
                            const void* p4 = nullptr, const void* p5 = nullptr, const void* p6 = nullptr);

// out (B, T, NH, HS), lse (B, NH, T) fp32 (may be nullptr).
void attention_forward_tc(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, int B, int T, int NH,
                          int KVH, int HS, cudaStream_t stream);

// dq, dk, dv overwritten; D (B, NH, T) = rowsum(dout * out), already computed.
void attention_backward_tc(bf16* dq, bf16* dk, bf16* dv, const float* D, const bf16* dout, const float* lse,
                           const bf16* q, const bf16* k, const bf16* v, int B, int T, int NH, int KVH, int HS,
                           cudaStream_t stream);

}  // namespace cuda
}  // namespace fw
