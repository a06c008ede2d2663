// emu_shim.h: what ops_attention_tc.cu needs from CUDA, on the CPU
// (tc_attention_emu.py). One std::thread per CUDA thread; the warp-collective
// operations (mma.sync, ldmatrix, shfl) meet at a per-warp barrier, exchange
// their operands and apply the PTX ISA's fragment layouts; cp.async copies at
// issue or, deferred, at cp.async.wait_group; shared memory starts as bf16
// NaN so a read of anything the kernel never wrote shows in the outputs; an
// ldmatrix or cp.async address that is misaligned or outside shared memory
// aborts. The mma computes in double and rounds to fp32 once, which is
// tighter than the hardware: the check is the layouts and the indexing, not
// the tensor cores' rounding.
#pragma once
#include <algorithm>
#include <atomic>
#include <cassert>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <vector>
#include <thread>
#include <random>
#include <string>
#include <functional>

#include "emu_common.h"
struct float2 { float x, y; };

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __restrict__

using std::min;

struct dim3 { unsigned x = 1, y = 1, z = 1; };
extern thread_local dim3 threadIdx, blockIdx;
extern dim3 gridDim;

struct bf16 { uint16_t x; };
struct __nv_bfloat162 { bf16 x, y; };
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
  __nv_bfloat162 v; v.x.x = emu_f2bf_rn(lo); v.y.x = emu_f2bf_rn(hi); return v;
}


struct Emu {
  unsigned char* smem = nullptr;  // dynamic smem of the running block
  size_t smem_bytes = 0;
  EmuBarrier* block_bar = nullptr;
  EmuBarrier* warp_bar[4] = {};
  // per-warp exchange slots
  uint32_t addr[4][32];
  uint32_t a[4][32][4], b[4][32][2];
  float c[4][32][4];
  float shfl[4][32];
  // per-thread trace of mma operands (a0..a3, b0, b1), indexed by threadIdx.x
  std::vector<uint32_t> trace[128];
  std::atomic<long> n_mma{0}, n_ldm{0}, n_ldm_t{0};
  bool defer_cp = false;
  std::deque<std::vector<std::pair<bf16*, const bf16*>>> pending[128];  // committed groups (deferred mode)
  std::vector<std::pair<bf16*, const bf16*>> open[128];
};
extern Emu emu;

inline int lane_id() { return threadIdx.x & 31; }
inline int warp_id() { return threadIdx.x >> 5; }

inline void __syncthreads() { emu.block_bar->wait(); }

inline float __shfl_xor_sync(unsigned mask, float v, int lm) {
  assert(mask == 0xffffffffu);
  const int w = warp_id(), l = lane_id();
  emu.shfl[w][l] = v;
  emu.warp_bar[w]->wait();
  const float r = emu.shfl[w][l ^ lm];
  emu.warp_bar[w]->wait();
  return r;
}

inline uint32_t smem_off(const void* p) {
  const unsigned char* q = static_cast<const unsigned char*>(p);
  if (q < emu.smem || q >= emu.smem + emu.smem_bytes) { std::fprintf(stderr, "generic->shared of non-smem pointer\n"); std::abort(); }
  return (uint32_t)(q - emu.smem);
}

// c += a * b (m16n8k16 row.col bf16 -> f32), PTX fragment layouts.
inline void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  const int w = warp_id(), l = lane_id();
  emu.n_mma++;
  auto& tr = emu.trace[threadIdx.x];
  tr.push_back(a[0]); tr.push_back(a[1]); tr.push_back(a[2]); tr.push_back(a[3]); tr.push_back(b0); tr.push_back(b1);
  for (int i = 0; i < 4; i++) { emu.a[w][l][i] = a[i]; emu.c[w][l][i] = c[i]; }
  emu.b[w][l][0] = b0; emu.b[w][l][1] = b1;
  emu.warp_bar[w]->wait();
  float A[16][16], B[16][8];
  for (int ln = 0; ln < 32; ln++) {
    const int g = ln >> 2, t = ln & 3;
    auto lo = [](uint32_t r) { return emu_bf2f((uint16_t)(r & 0xffff)); };
    auto hi = [](uint32_t r) { return emu_bf2f((uint16_t)(r >> 16)); };
    A[g][2 * t] = lo(emu.a[w][ln][0]);     A[g][2 * t + 1] = hi(emu.a[w][ln][0]);
    A[g + 8][2 * t] = lo(emu.a[w][ln][1]); A[g + 8][2 * t + 1] = hi(emu.a[w][ln][1]);
    A[g][2 * t + 8] = lo(emu.a[w][ln][2]); A[g][2 * t + 9] = hi(emu.a[w][ln][2]);
    A[g + 8][2 * t + 8] = lo(emu.a[w][ln][3]); A[g + 8][2 * t + 9] = hi(emu.a[w][ln][3]);
    B[2 * t][g] = lo(emu.b[w][ln][0]);     B[2 * t + 1][g] = hi(emu.b[w][ln][0]);
    B[2 * t + 8][g] = lo(emu.b[w][ln][1]); B[2 * t + 9][g] = hi(emu.b[w][ln][1]);
  }
  const int g = l >> 2, t = l & 3;
  float d[4];
  for (int i = 0; i < 4; i++) {
    const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
    double s = emu.c[w][l][i];
    for (int k = 0; k < 16; k++) s += (double)A[row][k] * (double)B[k][col];
    d[i] = (float)s;
  }
  emu.warp_bar[w]->wait();
  for (int i = 0; i < 4; i++) c[i] = d[i];
}

inline void ldmatrix_impl(uint32_t (&r)[4], const bf16* p, bool trans) {
  const int w = warp_id(), l = lane_id();
  const uint32_t off = smem_off(p);
  if (off % 16 != 0 || off + 16 > emu.smem_bytes) { std::fprintf(stderr, "ldmatrix bad row address %u\n", off); std::abort(); }
  (trans ? emu.n_ldm_t : emu.n_ldm)++;
  emu.addr[w][l] = off;
  emu.warp_bar[w]->wait();
  const int row = l >> 2, c0 = 2 * (l & 3);
  for (int i = 0; i < 4; i++) {
    auto el = [&](int rr, int cc) {  // element (rr, cc) of matrix i
      uint16_t h; std::memcpy(&h, emu.smem + emu.addr[w][8 * i + rr] + 2 * cc, 2); return (uint32_t)h;
    };
    r[i] = trans ? (el(c0, row) | (el(c0 + 1, row) << 16)) : (el(row, c0) | (el(row, c0 + 1) << 16));
  }
  emu.warp_bar[w]->wait();
}
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const bf16* p) { ldmatrix_impl(r, p, true); }
inline void ldmatrix_x4(uint32_t (&r)[4], const bf16* p) { ldmatrix_impl(r, p, false); }

inline void cp16(bf16* dst, const bf16* src) {
  if (src) std::memcpy(dst, src, 16); else std::memset(dst, 0, 16);
}
inline void cp_async16(bf16* dst, const bf16* src, bool pred) {
  const uint32_t off = smem_off(dst);
  if (off % 16 != 0 || off + 16 > emu.smem_bytes) { std::fprintf(stderr, "cp.async bad dst %u\n", off); std::abort(); }
  if (emu.defer_cp) emu.open[threadIdx.x].push_back({dst, pred ? src : nullptr});
  else cp16(dst, pred ? src : nullptr);
}
inline void cp_async_commit() {
  if (!emu.defer_cp) return;
  emu.pending[threadIdx.x].push_back(std::move(emu.open[threadIdx.x]));
  emu.open[threadIdx.x].clear();
}
template <int N>
inline void cp_async_wait() {
  if (!emu.defer_cp) return;
  auto& q = emu.pending[threadIdx.x];
  while ((int)q.size() > N) { for (auto& pr : q.front()) cp16(pr.first, pr.second); q.pop_front(); }
}
inline float fast_exp2(float x) { return std::exp2f(x); }
