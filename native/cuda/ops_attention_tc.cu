// ops_attention_tc.cu: causal GQA attention on tensor cores (bf16, HS 64 or
// 128, training layout), flash-attention-2 style (Dao 2023), register-level:
// every product is mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, the
// fp32 accumulators of one product are repacked in registers as the bf16 A
// operand of the next (P V, P^T dO, dS^T q, dS k), so the (T, T) score matrix
// never exists outside registers. ops_attention.cu dispatches here.
//
// Blocks are 4 warps (128 threads); a warp owns 16 rows of its block's tile
// (m16 of the mma). Tiles live in shared memory as bf16 rows padded to
// HS + 8 elements: the 16-byte pad shifts consecutive rows by 4 banks, so the
// 32-bit fragment loads (row g, word t) and the ldmatrix 8-row phases are
// conflict free. Operands needed "transposed" (V in P V, dO / q in the dk,
// dv products, k in dq) are read with ldmatrix.x4.trans; the key operand of
// S = q k^T (forward and dq) with ldmatrix.x4, two n-tiles per instruction,
// and the dq kernel's A operands (q, dout) one ldmatrix.x4 each. The tiles a block
// walks are double-buffered: tile it + 1 is copied with cp.async (zero-fill
// past T) while tile it is computed; one barrier after the wait, one after
// the compute before the buffer is refilled.
//
//  - forward: grid (ceil(T/64), NH, B), block = 64 query rows, key tiles of
//    64. Q fragments stay in registers; scores are scaled into log2 units
//    (scale * log2 e) for ex2; online softmax in fp32 (running max m and
//    per-thread partial sum l, the quad reduction of l once at the end);
//    lse = (m + log2 l) * ln 2, natural log as the API promises.
//    smem (Q, 2 K, 2 V) 5 * 64 * (HS + 8) * 2 B: 45 KiB (HS 64), 85 KiB (HS 128).
//  - backward, two kernels after D = rowsum(dout * out) (ops_attention.cu):
//    dkdv: grid (ceil(T/64), KVH, B), block = 64 keys; walks every query
//      tile (BR rows: 64 for HS 64, 32 for HS 128 to keep the dk + dv
//      accumulators in registers) of every query head of the group, from the
//      first tile that can see its keys. Per tile: S^T = k q^T,
//      P^T = exp2(S^T * scale log2e - lse log2e), dv += P^T dout,
//      dP^T = v dout^T, dS^T = P^T (dP^T - D), dk += dS^T q; dk *= scale.
//      smem (K, V, 2 q, 2 dout tiles, 2 lse, 2 D) (2*64 + 4*BR) * (HS + 8) * 2
//      + 4 * BR * 4 B: 55 KiB / 68.5 KiB.
//    dq: grid (ceil(T/64), NH, B), block = 64 query rows, key tiles of 64:
//      S = q k^T, dP = dout v^T, dS = P (dP - D), dq += dS k; dq *= scale.
//      smem (q, dout, 2 K, 2 V) 6 * 64 * (HS + 8) * 2 B: 54 KiB / 102 KiB.
//    Deterministic: no atomics, each output element written by one thread.
// Causal masking and T not a multiple of 64: rows / keys past T are loaded
// as zeros and masked (a query row sees key j iff j <= row, and j < T);
// nothing past T is stored. Query tiles run last-first (the causal work grows
// with the tile index).
//
// ptxas (CUDA 13.0, nvcc -O3 -Xptxas -v), registers per thread, dynamic
// shared memory per block (no static smem), spills; 128 threads per block:
//   kernel            HS   sm_80 regs  sm_90 regs  dyn smem   spill st/ld  stack
//   attn_fwd_tc       64      134         133       46080 B     0 / 0       0
//   attn_fwd_tc      128      178         217       87040 B     0 / 0       0
//   attn_bwd_dkdv_tc  64      198         168       56320 B     0 / 0       0
//   attn_bwd_dkdv_tc 128      222         232       70144 B     0 / 0       0
//   attn_bwd_dq_tc    64      166         162       55296 B     0 / 0       0
//   attn_bwd_dq_tc   128      168         166      104448 B     0 / 0       0
// (> 48 KiB opts in with cudaFuncSetAttribute; 104 KiB fits sm_80's 163 KiB.)
#include <cstdint>

#include "ops_attention_tc.cuh"

namespace fw {
namespace cuda {

namespace {

constexpr int kTcThreads = 128;  // 4 warps
constexpr int kTile = 64;        // rows per block tile (queries fwd/dq, keys dkdv), keys per tile (fwd/dq)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

__device__ __forceinline__ uint32_t ld32(const bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  return *reinterpret_cast<uint32_t*>(&v);
}

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));  // ex2(-inf) = +0
  return y;
}

// c += a (16x16, row) * b (16x8, col), bf16 in, fp32 accumulate.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 bf16 matrices, transposed: lane l gives the address of row (l & 7)
// of matrix l >> 3. Used for a B operand stored row-major as [k][n]: with
// rows k0 + (l & 7) + ((l >> 3) & 1) * 8 and columns n0 + (l >> 4) * 8, r[0],
// r[1] are b0, b1 of the n-tile n0 and r[2], r[3] those of n0 + 8.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const bf16* p) {
  const uint32_t addr = (uint32_t)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

// Four 8x8 bf16 matrices as stored (no transpose): lane l gives the address
// of row (l & 7) of matrix l >> 3 and receives, for each matrix, row l / 4,
// elements 2 (l % 4) and 2 (l % 4) + 1: the b0 / b1 layout of an mma B
// operand whose columns are stored as smem rows ([n][k]). With matrix m at
// rows n0 + (m >> 1) * 8 and columns k0 + (m & 1) * 8, r[0], r[1] are b0, b1
// of n-tile n0 and r[2], r[3] those of n0 + 8: one instruction instead of
// four 32-bit loads.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const bf16* p) {
  const uint32_t addr = (uint32_t)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

// b0, b1 of n-tiles n and n + 1 (keys/rows n * 8 .. n * 8 + 15 of brows, a
// row-major [n][k] smem tile), k columns k0 .. k0 + 15, by ldmatrix_x4.
template <int LD>
__device__ __forceinline__ void load_b_pair(uint32_t (&b)[4], const bf16* brows, int n, int k0, int lane) {
  const int m = lane >> 3;
  ldmatrix_x4(b, brows + ((n + (m >> 1)) * 8 + (lane & 7)) * LD + k0 + (m & 1) * 8);
}

// 16 bytes global -> shared without a register round trip; pred false
// zero-fills (src-size 0: nothing is read, src must still be a valid address).
__device__ __forceinline__ void cp_async16(bf16* dst, const bf16* src, bool pred) {
  const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(pred ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Wait until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// A fragment (16x16) of rows r0..r0+15, columns c0..c0+15 of a row-major
// smem tile with leading dimension LD.
template <int LD>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const bf16* tile, int r0, int c0, int g, int tq) {
  const bf16* p = tile + (r0 + g) * LD + c0 + 2 * tq;
  a[0] = ld32(p);
  a[1] = ld32(p + 8 * LD);
  a[2] = ld32(p + 8);
  a[3] = ld32(p + 8 * LD + 8);
}

// The same A fragment by one ldmatrix_x4: matrix m at rows r0 + (m & 1) * 8,
// columns c0 + (m >> 1) * 8 gives a[m] in load_a's order.
template <int LD>
__device__ __forceinline__ void load_a_ldmatrix(uint32_t (&a)[4], const bf16* tile, int r0, int c0, int lane) {
  const int m = lane >> 3;
  ldmatrix_x4(a, tile + (r0 + (lane & 7) + (m & 1) * 8) * LD + c0 + (m >> 1) * 8);
}

// acc (16 x HS, C fragments) += A (16 x 16K, given as C fragments of 2K
// n-tiles, rows = M, columns = the k dim) * B (16K x HS) where B is stored
// row-major [k][n] in smem (ldmatrix.trans). NK = number of 16-wide k chunks.
template <int HS, int LD, int NK>
__device__ __forceinline__ void mma_c_times_rows(float (&acc)[HS / 8][4], const float (&c)[2 * NK][4],
                                                 const bf16* brows, int lane) {
  const int roff = (lane & 7) + ((lane >> 3) & 1) * 8, coff = (lane >> 4) * 8;
#pragma unroll
  for (int kc = 0; kc < NK; kc++) {
    uint32_t a[4];
    a[0] = pack_bf16(c[2 * kc][0], c[2 * kc][1]);
    a[1] = pack_bf16(c[2 * kc][2], c[2 * kc][3]);
    a[2] = pack_bf16(c[2 * kc + 1][0], c[2 * kc + 1][1]);
    a[3] = pack_bf16(c[2 * kc + 1][2], c[2 * kc + 1][3]);
    const bf16* base = brows + (kc * 16 + roff) * LD + coff;
#pragma unroll
    for (int dn = 0; dn < HS / 8; dn += 2) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, base + dn * 8);
      mma_bf16(acc[dn], a, b[0], b[1]);
      mma_bf16(acc[dn + 1], a, b[2], b[3]);
    }
  }
}

// c (16 x 8N, C fragments) = A (rows r0.. of atile, all HS columns) *
// B^T where B rows are brows[0 .. 8N) (row-major [n][k], k = HS).
// kLdmatrix: B operands two n-tiles per ldmatrix_x4 (fewer shared-memory
// instructions); false: two 32-bit loads per n-tile, which the dk/dv kernel
// keeps because the ldmatrix form costs it registers (a spill at HS 64).
template <int HS, int LD, int N, bool kLdmatrix = true>
__device__ __forceinline__ void mma_rows_times_rows_t(float (&c)[N][4], const bf16* atile, int r0,
                                                      const bf16* brows, int g, int tq) {
  static_assert(!kLdmatrix || N % 2 == 0, "ldmatrix loads B operands two n-tiles at a time");
  const int lane = g * 4 + tq;
#pragma unroll
  for (int n = 0; n < N; n++) c[n][0] = c[n][1] = c[n][2] = c[n][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < HS / 16; kk++) {
    uint32_t a[4];
    if constexpr (kLdmatrix) {
      load_a_ldmatrix<LD>(a, atile, r0, kk * 16, lane);
#pragma unroll
      for (int n = 0; n < N; n += 2) {
        uint32_t b[4];
        load_b_pair<LD>(b, brows, n, kk * 16, lane);
        mma_bf16(c[n], a, b[0], b[1]);
        mma_bf16(c[n + 1], a, b[2], b[3]);
      }
    } else {
      load_a<LD>(a, atile, r0, kk * 16, g, tq);
#pragma unroll
      for (int n = 0; n < N; n++) {
        const bf16* p = brows + (n * 8 + g) * LD + kk * 16 + 2 * tq;
        mma_bf16(c[n], a, ld32(p), ld32(p + 8));
      }
    }
  }
}

// Starts copying ROWS rows r0.. of a (.., T, H, HS) tensor (src already
// offset to batch and head, row stride `stride` elements) into a padded smem
// tile with cp.async; rows past T become zero. The caller commits the group,
// waits for it and synchronises the block before reading the tile.
template <int HS, int ROWS>
__device__ __forceinline__ void load_rows_async(bf16* dst, const bf16* __restrict__ src, long long stride, int r0,
                                                int T) {
  constexpr int LD = HS + 8, CH = HS / 8;
  for (int idx = threadIdx.x; idx < ROWS * CH; idx += kTcThreads) {
    const int r = idx / CH, c = (idx % CH) * 8;
    const bool in = r0 + r < T;
    cp_async16(dst + r * LD + c, in ? src + (long long)(r0 + r) * stride + c : src, in);
  }
}

template <int HS>
constexpr size_t fwd_smem_bytes() {
  return (size_t)5 * kTile * (HS + 8) * sizeof(bf16);  // Q, K x2, V x2
}
template <int HS>
__host__ __device__ constexpr int dkdv_rows() {
  return HS <= 64 ? 64 : 32;
}
template <int HS>
constexpr size_t dkdv_smem_bytes() {
  // K, V; Q x2, dO x2; lse x2, D x2
  return (size_t)(2 * kTile + 4 * dkdv_rows<HS>()) * (HS + 8) * sizeof(bf16) + 4 * dkdv_rows<HS>() * sizeof(float);
}
template <int HS>
constexpr size_t dq_smem_bytes() {
  return (size_t)6 * kTile * (HS + 8) * sizeof(bf16);  // Q, dO, K x2, V x2
}

// ---------------------------------------------------------------- forward
template <int HS>
__global__ void __launch_bounds__(kTcThreads)
    attn_fwd_tc_kernel(bf16* __restrict__ out, float* __restrict__ lse, const bf16* __restrict__ q,
                       const bf16* __restrict__ k, const bf16* __restrict__ v, int T, int NH, int KVH,
                       float scale_log2) {
  constexpr int LD = HS + 8, KC = HS / 16, DN = HS / 8, SN = kTile / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Qs = reinterpret_cast<bf16*>(smem_raw);
  bf16* Kbuf = Qs + kTile * LD;       // 2 tiles
  bf16* Vbuf = Kbuf + 2 * kTile * LD;  // 2 tiles
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const int b = blockIdx.z, h = blockIdx.y, i0 = (gridDim.x - 1 - blockIdx.x) * kTile;
  const int kvh = h / (NH / KVH), wr = warp * 16;
  const long long qst = (long long)NH * HS, kst = (long long)KVH * HS;
  const bf16* qb = q + (long long)b * T * qst + (long long)h * HS;
  const bf16* kb = k + (long long)b * T * kst + (long long)kvh * HS;
  const bf16* vb = v + (long long)b * T * kst + (long long)kvh * HS;

  load_rows_async<HS, kTile>(Qs, qb, qst, i0, T);
  load_rows_async<HS, kTile>(Kbuf, kb, kst, 0, T);
  load_rows_async<HS, kTile>(Vbuf, vb, kst, 0, T);
  cp_async_commit();
  uint32_t qf[KC][4];

  float o[DN][4];
#pragma unroll
  for (int dn = 0; dn < DN; dn++) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
  const int row0 = i0 + wr + g, row1 = row0 + 8;
  // Causal: no key past the tile's last row. Key tile it + 1 streams into the
  // other buffer while tile it is computed.
  const int ntiles = (min(T, i0 + kTile) + kTile - 1) / kTile;
  for (int it = 0; it < ntiles; it++) {
    const int j0 = it * kTile;
    if (it + 1 < ntiles) {
      const int nb = ((it + 1) & 1) * kTile * LD;
      load_rows_async<HS, kTile>(Kbuf + nb, kb, kst, j0 + kTile, T);
      load_rows_async<HS, kTile>(Vbuf + nb, vb, kst, j0 + kTile, T);
      cp_async_commit();
      cp_async_wait<1>();  // all but the group just issued: tile it (and Q) have landed
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (it == 0) {
#pragma unroll
      for (int kk = 0; kk < KC; kk++) load_a<LD>(qf[kk], Qs, wr, kk * 16, g, tq);
    }
    const bf16* Ks = Kbuf + (it & 1) * kTile * LD;
    const bf16* Vs = Vbuf + (it & 1) * kTile * LD;
    float s[SN][4];
#pragma unroll
    for (int n = 0; n < SN; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < KC; kk++) {
#pragma unroll
      for (int n = 0; n < SN; n += 2) {
        uint32_t kb2[4];
        load_b_pair<LD>(kb2, Ks, n, kk * 16, lane);  // b0 / b1 of key tiles n and n + 1
        mma_bf16(s[n], qf[kk], kb2[0], kb2[1]);
        mma_bf16(s[n + 1], qf[kk], kb2[2], kb2[3]);
      }
    }
    // Some key of the tile is past some row of this warp, or past T.
    const bool need_mask = (j0 + kTile - 1 > i0 + wr) || (j0 + kTile > T);
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int n = 0; n < SN; n++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        float x = s[n][e] * scale_log2;
        if (need_mask) {
          const int col = j0 + n * 8 + 2 * tq + (e & 1), row = e < 2 ? row0 : row1;
          if (col > row || col >= T) x = -INFINITY;
        }
        s[n][e] = x;
      }
      mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
      mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
    // Every row sees key 0 in the first tile, so mn is finite; guard anyway.
    const float base0 = mn0 == -INFINITY ? 0.0f : mn0, base1 = mn1 == -INFINITY ? 0.0f : mn1;
    const float corr0 = fast_exp2(m0 - base0), corr1 = fast_exp2(m1 - base1);  // 0 on the first tile
    m0 = mn0;
    m1 = mn1;
    float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
    for (int n = 0; n < SN; n++) {
      s[n][0] = fast_exp2(s[n][0] - base0);
      s[n][1] = fast_exp2(s[n][1] - base0);
      s[n][2] = fast_exp2(s[n][2] - base1);
      s[n][3] = fast_exp2(s[n][3] - base1);
      rs0 += s[n][0] + s[n][1];
      rs1 += s[n][2] + s[n][3];
    }
    l0 = l0 * corr0 + rs0;  // this thread's partial row sums
    l1 = l1 * corr1 + rs1;
#pragma unroll
    for (int dn = 0; dn < DN; dn++) {
      o[dn][0] *= corr0;
      o[dn][1] *= corr0;
      o[dn][2] *= corr1;
      o[dn][3] *= corr1;
    }
    mma_c_times_rows<HS, LD, kTile / 16>(o, s, Vs, lane);
    __syncthreads();  // this buffer is refilled by the next iteration (tile it + 2)
  }
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
  bf16* ob = out + (long long)b * T * qst + (long long)h * HS + 2 * tq;
  if (row0 < T) {
#pragma unroll
    for (int dn = 0; dn < DN; dn++)
      *reinterpret_cast<uint32_t*>(ob + row0 * qst + dn * 8) = pack_bf16(o[dn][0] * inv0, o[dn][1] * inv0);
    if (lse && tq == 0) lse[((long long)b * NH + h) * T + row0] = (m0 + log2f(l0)) * kLn2;
  }
  if (row1 < T) {
#pragma unroll
    for (int dn = 0; dn < DN; dn++)
      *reinterpret_cast<uint32_t*>(ob + row1 * qst + dn * 8) = pack_bf16(o[dn][2] * inv1, o[dn][3] * inv1);
    if (lse && tq == 0) lse[((long long)b * NH + h) * T + row1] = (m1 + log2f(l1)) * kLn2;
  }
}

// ------------------------------------------------------------- dk, dv
template <int HS>
__global__ void __launch_bounds__(kTcThreads)
    attn_bwd_dkdv_tc_kernel(bf16* __restrict__ dk, bf16* __restrict__ dv, const bf16* __restrict__ dout,
                            const float* __restrict__ lse, const float* __restrict__ D, const bf16* __restrict__ q,
                            const bf16* __restrict__ k, const bf16* __restrict__ v, int T, int NH, int KVH,
                            float scale_log2, float scale) {
  constexpr int LD = HS + 8, DN = HS / 8, BR = dkdv_rows<HS>(), QN = BR / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Ks = reinterpret_cast<bf16*>(smem_raw);
  bf16* Vs = Ks + kTile * LD;
  bf16* Qbuf = Vs + kTile * LD;      // 2 tiles of BR rows
  bf16* dObuf = Qbuf + 2 * BR * LD;  // 2 tiles
  float* lse_buf = reinterpret_cast<float*>(dObuf + 2 * BR * LD);  // 2 x BR: lse * log2 e of the tile's rows
  float* D_buf = lse_buf + 2 * BR;                                 // 2 x BR
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const int b = blockIdx.z, kvh = blockIdx.y, j0 = blockIdx.x * kTile;
  const int group = NH / KVH, wr = warp * 16;
  const long long qst = (long long)NH * HS, kst = (long long)KVH * HS;
  const long long koff = (long long)b * T * kst + (long long)kvh * HS;

  load_rows_async<HS, kTile>(Ks, k + koff, kst, j0, T);
  load_rows_async<HS, kTile>(Vs, v + koff, kst, j0, T);  // committed with the first Q, dO tiles

  float dka[DN][4], dva[DN][4];
#pragma unroll
  for (int dn = 0; dn < DN; dn++) {
    dka[dn][0] = dka[dn][1] = dka[dn][2] = dka[dn][3] = 0.0f;
    dva[dn][0] = dva[dn][1] = dva[dn][2] = dva[dn][3] = 0.0f;
  }
  const int key0 = j0 + wr + g, key1 = key0 + 8;
  // The query tiles this block walks: for each query head gh of the group,
  // rows istart.. (earlier tiles see none of these keys); iteration it is
  // tile (gh, i0) = (it / per_head, istart + (it % per_head) * BR). Tile
  // it + 1 streams into the other buffers while tile it is computed.
  const int istart = (j0 / BR) * BR;
  const int per_head = (T - istart + BR - 1) / BR, ntiles = group * per_head;
  // Issue the loads of query tile `it` into buffer it & 1 (lse and D by plain
  // stores, visible after the barrier that precedes their use).
  auto issue = [&](int it) {
    const int gh = it / per_head, i0 = istart + (it % per_head) * BR, h = kvh * group + gh, buf = it & 1;
    const long long qoff = (long long)b * T * qst + (long long)h * HS;
    load_rows_async<HS, BR>(Qbuf + buf * BR * LD, q + qoff, qst, i0, T);
    load_rows_async<HS, BR>(dObuf + buf * BR * LD, dout + qoff, qst, i0, T);
    cp_async_commit();
    const long long rb = ((long long)b * NH + h) * T;
    for (int r = threadIdx.x; r < BR; r += kTcThreads) {
      const int i = i0 + r;
      lse_buf[buf * BR + r] = i < T ? lse[rb + i] * kLog2e : 0.0f;
      D_buf[buf * BR + r] = i < T ? D[rb + i] : 0.0f;
    }
  };
  issue(0);
  for (int it = 0; it < ntiles; it++) {
    const int i0 = istart + (it % per_head) * BR, buf = it & 1;
    if (it + 1 < ntiles) {
      issue(it + 1);
      cp_async_wait<1>();  // tile it (and K, V with tile 0) have landed
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const bf16* Qs = Qbuf + buf * BR * LD;
    const bf16* dOs = dObuf + buf * BR * LD;
    const float* lse_s = lse_buf + buf * BR;
    const float* D_s = D_buf + buf * BR;
    // Skip when every query of the tile precedes this warp's keys (warp-uniform).
    if (i0 + BR - 1 >= j0 + wr) {
      float s[QN][4];  // S^T: rows = this warp's 16 keys, columns = the tile's queries
      mma_rows_times_rows_t<HS, LD, QN, false>(s, Ks, wr, Qs, g, tq);
      const bool need_mask = (i0 < j0 + wr + 15) || (i0 + BR > T);
#pragma unroll
      for (int n = 0; n < QN; n++) {
        const int c = n * 8 + 2 * tq;
        const float2 ls = *reinterpret_cast<const float2*>(lse_s + c);
#pragma unroll
        for (int e = 0; e < 4; e++) {
          float p = fast_exp2(s[n][e] * scale_log2 - ((e & 1) ? ls.y : ls.x));
          if (need_mask) {
            const int qi = i0 + c + (e & 1), kj = e < 2 ? key0 : key1;
            if (qi < kj || qi >= T) p = 0.0f;
          }
          s[n][e] = p;
        }
      }
      mma_c_times_rows<HS, LD, BR / 16>(dva, s, dOs, lane);  // dv += P^T dout

      float dp[QN][4];  // dP^T = v dout^T
      mma_rows_times_rows_t<HS, LD, QN, false>(dp, Vs, wr, dOs, g, tq);
#pragma unroll
      for (int n = 0; n < QN; n++) {
        const float2 dd = *reinterpret_cast<const float2*>(D_s + n * 8 + 2 * tq);
        dp[n][0] = s[n][0] * (dp[n][0] - dd.x);
        dp[n][1] = s[n][1] * (dp[n][1] - dd.y);
        dp[n][2] = s[n][2] * (dp[n][2] - dd.x);
        dp[n][3] = s[n][3] * (dp[n][3] - dd.y);
      }
      mma_c_times_rows<HS, LD, BR / 16>(dka, dp, Qs, lane);  // dk += dS^T q
    }
    __syncthreads();  // buffer `buf` is refilled by the next iteration (tile it + 2)
  }
  bf16* dkb = dk + koff + 2 * tq;
  bf16* dvb = dv + koff + 2 * tq;
  if (key0 < T) {
#pragma unroll
    for (int dn = 0; dn < DN; dn++) {
      *reinterpret_cast<uint32_t*>(dkb + key0 * kst + dn * 8) = pack_bf16(dka[dn][0] * scale, dka[dn][1] * scale);
      *reinterpret_cast<uint32_t*>(dvb + key0 * kst + dn * 8) = pack_bf16(dva[dn][0], dva[dn][1]);
    }
  }
  if (key1 < T) {
#pragma unroll
    for (int dn = 0; dn < DN; dn++) {
      *reinterpret_cast<uint32_t*>(dkb + key1 * kst + dn * 8) = pack_bf16(dka[dn][2] * scale, dka[dn][3] * scale);
      *reinterpret_cast<uint32_t*>(dvb + key1 * kst + dn * 8) = pack_bf16(dva[dn][2], dva[dn][3]);
    }
  }
}

// ------------------------------------------------------------------- dq
template <int HS>
__global__ void __launch_bounds__(kTcThreads)
    attn_bwd_dq_tc_kernel(bf16* __restrict__ dq, const bf16* __restrict__ dout, const float* __restrict__ lse,
                          const float* __restrict__ D, const bf16* __restrict__ q, const bf16* __restrict__ k,
                          const bf16* __restrict__ v, int T, int NH, int KVH, float scale_log2, float scale) {
  constexpr int LD = HS + 8, DN = HS / 8, SN = kTile / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* Qs = reinterpret_cast<bf16*>(smem_raw);
  bf16* dOs = Qs + kTile * LD;
  bf16* Kbuf = dOs + kTile * LD;       // 2 tiles
  bf16* Vbuf = Kbuf + 2 * kTile * LD;  // 2 tiles
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, tq = lane & 3;
  const int b = blockIdx.z, h = blockIdx.y, i0 = (gridDim.x - 1 - blockIdx.x) * kTile;
  const int kvh = h / (NH / KVH), wr = warp * 16;
  const long long qst = (long long)NH * HS, kst = (long long)KVH * HS;
  const long long qoff = (long long)b * T * qst + (long long)h * HS;
  const long long koff = (long long)b * T * kst + (long long)kvh * HS;

  load_rows_async<HS, kTile>(Qs, q + qoff, qst, i0, T);
  load_rows_async<HS, kTile>(dOs, dout + qoff, qst, i0, T);
  load_rows_async<HS, kTile>(Kbuf, k + koff, kst, 0, T);
  load_rows_async<HS, kTile>(Vbuf, v + koff, kst, 0, T);
  cp_async_commit();
  const int row0 = i0 + wr + g, row1 = row0 + 8;
  const long long rb = ((long long)b * NH + h) * T;
  const float lse0 = row0 < T ? lse[rb + row0] * kLog2e : 0.0f, lse1 = row1 < T ? lse[rb + row1] * kLog2e : 0.0f;
  const float D0 = row0 < T ? D[rb + row0] : 0.0f, D1 = row1 < T ? D[rb + row1] : 0.0f;

  float dqa[DN][4];
#pragma unroll
  for (int dn = 0; dn < DN; dn++) dqa[dn][0] = dqa[dn][1] = dqa[dn][2] = dqa[dn][3] = 0.0f;
  const int ntiles = (min(T, i0 + kTile) + kTile - 1) / kTile;
  for (int it = 0; it < ntiles; it++) {
    const int j0 = it * kTile;
    if (it + 1 < ntiles) {
      const int nb = ((it + 1) & 1) * kTile * LD;
      load_rows_async<HS, kTile>(Kbuf + nb, k + koff, kst, j0 + kTile, T);
      load_rows_async<HS, kTile>(Vbuf + nb, v + koff, kst, j0 + kTile, T);
      cp_async_commit();
      cp_async_wait<1>();  // tile it (and Q, dO) have landed
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const bf16* Ks = Kbuf + (it & 1) * kTile * LD;
    const bf16* Vs = Vbuf + (it & 1) * kTile * LD;
    float s[SN][4], dp[SN][4];
    mma_rows_times_rows_t<HS, LD, SN>(s, Qs, wr, Ks, g, tq);   // S = q k^T
    mma_rows_times_rows_t<HS, LD, SN>(dp, dOs, wr, Vs, g, tq);  // dP = dout v^T
    const bool need_mask = (j0 + kTile - 1 > i0 + wr) || (j0 + kTile > T);
#pragma unroll
    for (int n = 0; n < SN; n++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        float p = fast_exp2(s[n][e] * scale_log2 - (e < 2 ? lse0 : lse1));
        if (need_mask) {
          const int col = j0 + n * 8 + 2 * tq + (e & 1), row = e < 2 ? row0 : row1;
          if (col > row || col >= T) p = 0.0f;
        }
        s[n][e] = p * (dp[n][e] - (e < 2 ? D0 : D1));  // dS
      }
    }
    mma_c_times_rows<HS, LD, kTile / 16>(dqa, s, Ks, lane);  // dq += dS k
    __syncthreads();  // this buffer is refilled by the next iteration (tile it + 2)
  }
  bf16* qb = dq + qoff + 2 * tq;
  if (row0 < T) {
#pragma unroll
    for (int dn = 0; dn < DN; dn++)
      *reinterpret_cast<uint32_t*>(qb + row0 * qst + dn * 8) = pack_bf16(dqa[dn][0] * scale, dqa[dn][1] * scale);
  }
  if (row1 < T) {
#pragma unroll
    for (int dn = 0; dn < DN; dn++)
      *reinterpret_cast<uint32_t*>(qb + row1 * qst + dn * 8) = pack_bf16(dqa[dn][2] * scale, dqa[dn][3] * scale);
  }
}

template <typename K>
void set_smem_tc(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    FW_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <int HS>
void forward_tc(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, int B, int T, int NH, int KVH,
                cudaStream_t stream) {
  constexpr size_t smem = fwd_smem_bytes<HS>();
  set_smem_tc(attn_fwd_tc_kernel<HS>, smem);
  const float scale_log2 = kLog2e / sqrtf((float)HS);
  attn_fwd_tc_kernel<HS><<<dim3(ceil_div(T, kTile), NH, B), kTcThreads, smem, stream>>>(out, lse, q, k, v, T, NH,
                                                                                        KVH, scale_log2);
  FW_CUDA_CHECK_LAUNCH();
}

template <int HS>
void backward_tc(bf16* dq, bf16* dk, bf16* dv, const float* D, const bf16* dout, const float* lse, const bf16* q,
                 const bf16* k, const bf16* v, int B, int T, int NH, int KVH, cudaStream_t stream) {
  const float scale = 1.0f / sqrtf((float)HS), scale_log2 = scale * kLog2e;
  constexpr size_t smem_kv = dkdv_smem_bytes<HS>();
  set_smem_tc(attn_bwd_dkdv_tc_kernel<HS>, smem_kv);
  attn_bwd_dkdv_tc_kernel<HS><<<dim3(ceil_div(T, kTile), KVH, B), kTcThreads, smem_kv, stream>>>(
      dk, dv, dout, lse, D, q, k, v, T, NH, KVH, scale_log2, scale);
  FW_CUDA_CHECK_LAUNCH();
  constexpr size_t smem_q = dq_smem_bytes<HS>();
  set_smem_tc(attn_bwd_dq_tc_kernel<HS>, smem_q);
  attn_bwd_dq_tc_kernel<HS><<<dim3(ceil_div(T, kTile), NH, B), kTcThreads, smem_q, stream>>>(
      dq, dout, lse, D, q, k, v, T, NH, KVH, scale_log2, scale);
  FW_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool attention_tc_supported(int HS, const void* p0, const void* p1, const void* p2, const void* p3, const void* p4,
                            const void* p5, const void* p6) {
  if (HS != 64 && HS != 128) return false;
  const void* ps[] = {p0, p1, p2, p3, p4, p5, p6};
  for (const void* p : ps)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

void attention_forward_tc(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, int B, int T, int NH,
                          int KVH, int HS, cudaStream_t stream) {
  if (B == 0 || T == 0) return;
  if (HS == 64)
    forward_tc<64>(out, lse, q, k, v, B, T, NH, KVH, stream);
  else
    forward_tc<128>(out, lse, q, k, v, B, T, NH, KVH, stream);
}

void attention_backward_tc(bf16* dq, bf16* dk, bf16* dv, const float* D, const bf16* dout, const float* lse,
                           const bf16* q, const bf16* k, const bf16* v, int B, int T, int NH, int KVH, int HS,
                           cudaStream_t stream) {
  if (B == 0 || T == 0) return;
  if (HS == 64)
    backward_tc<64>(dq, dk, dv, D, dout, lse, q, k, v, B, T, NH, KVH, stream);
  else
    backward_tc<128>(dq, dk, dv, D, dout, lse, q, k, v, B, T, NH, KVH, stream);
}

}  // namespace cuda
}  // namespace fw
