// emu_ptx.h: the inline-PTX helpers of ops_attention_tc.cu (the tensor-core
// attention) on emu_simt.h's fibers (ops_emu.py removes the helpers from
// the source and includes this instead).
// tc_attention_emu checks the kernels with it on their own. The semantics:
//  - mma.sync m16n8k16 row.col bf16 -> f32: the warp's lanes publish their
//    A and B fragments, each lane computes its four accumulators from the
//    fragment layouts (the products summed in double, rounded to fp32 once:
//    tighter than the tensor cores, so compare with a tolerance);
//  - ldmatrix .x4 (and .trans): lanes 8i..8i+7 give the row addresses of
//    matrix i, which must be 16-byte aligned and inside the block's dynamic
//    shared memory;
//  - cp.async 16 bytes: queued per thread in commit groups and copied only
//    at cp.async.wait_group (the latest moment the PTX allows), so a read of
//    shared memory before the wait sees the old bytes;
//  - ex2.approx: exact.
#pragma once
#include <deque>
#include <utility>
#include <vector>

#include "emu_simt.h"

struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
  return {__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
}

struct EmuPtx {
  uint32_t a[32][32][4], b[32][32][2];  // [warp][lane]: mma operands
  uint32_t addr[32][32];                // ldmatrix row offsets
  unsigned long serial = 0;             // the block the cp.async queues belong to
  long n_mma = 0, n_ldm = 0, n_ldm_t = 0;  // per-lane calls, for the tests' "the tensor cores ran"
  using Copy = std::pair<void*, const void*>;  // (shared destination, global source or null for zeros)
  std::vector<std::vector<Copy>> open;         // [thread] copies since the last commit
  std::vector<std::deque<std::vector<Copy>>> committed;
};
inline EmuPtx emu_ptx;

// The offset of p in the block's dynamic shared memory; aborts outside it.
inline uint32_t emu_smem_offset(const void* p, size_t bytes, const char* what) {
  const char* base = reinterpret_cast<const char*>(emu_block.dyn.data());
  const char* q = static_cast<const char*>(p);
  if (q < base || q + bytes > base + emu_block.dyn_bytes) {
    std::fprintf(stderr, "emu_ptx: %s outside dynamic shared memory (offset %lld of %zu bytes)\n", what,
                 (long long)(q - base), emu_block.dyn_bytes);
    std::abort();
  }
  const uint32_t off = (uint32_t)(q - base);
  if (off % 16 != 0) {
    std::fprintf(stderr, "emu_ptx: %s at offset %u, not 16-byte aligned\n", what, off);
    std::abort();
  }
  return off;
}

inline float emu_bf_lo(uint32_t r) { return emu_bf2f((uint16_t)(r & 0xffffu)); }
inline float emu_bf_hi(uint32_t r) { return emu_bf2f((uint16_t)(r >> 16)); }

// c += a * b, m16n8k16, A row-major 16x16, B column-major 16x8 (PTX
// fragment layouts: lane 4g + t holds A[g][2t..2t+1] in a[0], A[g+8][..] in
// a[1], A[g][2t+8..] in a[2], A[g+8][2t+8..] in a[3]; B[2t..2t+1][g] in b0,
// B[2t+8..2t+9][g] in b1; C rows g and g+8, columns 2t and 2t+1).
inline void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  const int w = emu_tid() >> 5, l = emu_tid() & 31;
  emu_ptx.n_mma++;
  for (int i = 0; i < 4; i++) emu_ptx.a[w][l][i] = a[i];
  emu_ptx.b[w][l][0] = b0;
  emu_ptx.b[w][l][1] = b1;
  emu_block.warps[w]->wait();
  const int g = l >> 2, t = l & 3;
  float d[4];
  for (int i = 0; i < 4; i++) {
    const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
    double s = c[i];
    for (int k = 0; k < 16; k++) {
      const uint32_t ar = emu_ptx.a[w][(row % 8) * 4 + (k % 8) / 2][(row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)];
      const uint32_t br = emu_ptx.b[w][col * 4 + (k % 8) / 2][k >= 8 ? 1 : 0];
      const float av = (k & 1) ? emu_bf_hi(ar) : emu_bf_lo(ar), bv = (k & 1) ? emu_bf_hi(br) : emu_bf_lo(br);
      s += (double)av * (double)bv;
    }
    d[i] = (float)s;
  }
  emu_block.warps[w]->wait();  // every lane has read the operands before the next mma writes them
  for (int i = 0; i < 4; i++) c[i] = d[i];
}

inline void emu_ldmatrix(uint32_t (&r)[4], const __nv_bfloat16* p, bool trans) {
  const int w = emu_tid() >> 5, l = emu_tid() & 31;
  emu_ptx.addr[w][l] = emu_smem_offset(p, 16, "ldmatrix row address");
  (trans ? emu_ptx.n_ldm_t : emu_ptx.n_ldm)++;
  emu_block.warps[w]->wait();
  const unsigned char* smem = reinterpret_cast<const unsigned char*>(emu_block.dyn.data());
  const int row = l >> 2, c0 = 2 * (l & 3);
  for (int i = 0; i < 4; i++) {
    auto el = [&](int rr, int cc) {  // element (rr, cc) of matrix i
      uint16_t h;
      std::memcpy(&h, smem + emu_ptx.addr[w][8 * i + rr] + 2 * cc, 2);
      return (uint32_t)h;
    };
    r[i] = trans ? (el(c0, row) | (el(c0 + 1, row) << 16)) : (el(row, c0) | (el(row, c0 + 1) << 16));
  }
  emu_block.warps[w]->wait();
}
inline void ldmatrix_x4(uint32_t (&r)[4], const __nv_bfloat16* p) { emu_ldmatrix(r, p, false); }
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const __nv_bfloat16* p) { emu_ldmatrix(r, p, true); }

inline EmuPtx& emu_ptx_block() {
  EmuPtx& e = emu_ptx;
  if (e.serial != emu_block.serial) {  // a new block: no copies in flight
    const size_t n = blockDim.x * blockDim.y * blockDim.z;
    e.open.assign(n, {});
    e.committed.assign(n, {});
    e.serial = emu_block.serial;
  }
  return e;
}
inline void cp_async16(__nv_bfloat16* dst, const __nv_bfloat16* src, bool pred) {
  emu_smem_offset(dst, 16, "cp.async destination");
  emu_ptx_block().open[emu_tid()].push_back({dst, pred ? src : nullptr});
}
inline void cp_async_commit() {
  EmuPtx& e = emu_ptx_block();
  e.committed[emu_tid()].push_back(std::move(e.open[emu_tid()]));
  e.open[emu_tid()].clear();
}
// Completes every committed group but the N most recent.
template <int N>
inline void cp_async_wait() {
  auto& q = emu_ptx_block().committed[emu_tid()];
  while ((int)q.size() > N) {
    for (const EmuPtx::Copy& c : q.front()) {
      if (c.second)
        std::memcpy(c.first, c.second, 16);
      else
        std::memset(c.first, 0, 16);  // the predicate off: zeros
    }
    q.pop_front();
  }
}
inline float fast_exp2(float x) { return std::exp2(x); }
