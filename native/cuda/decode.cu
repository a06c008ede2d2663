// decode.cu: the decode-step kernels that read the position from device
// memory (decode.cuh), for CUDA-graph capture of a whole step.
//
// attention_decode_dpos is split-K ("flash-decoding"):
//  - split kernel: grid (Tq * NH, nchunks, B), kDecThreads threads. Block
//    (t*NH + h, c, b) owns query row (b, t, h) and keys [c*chunk, (c+1)*chunk)
//    clipped to the row's causal end *d_pos + t + 1 (and to S); a block whose
//    chunk starts past that end exits at once, so the grid, sized by the
//    capacity S, never depends on the position. Inside a block the keys are
//    spread over "key groups" of lpk lanes: a lane holds VEC consecutive head
//    dims (one 16-byte load when HS allows) of q, k and v, the group's dot
//    product is a shuffle-xor reduction over its lpk lanes, and each group
//    keeps its own online softmax (m, l, acc) over the keys it visits
//    (kDecUnroll keys per group per step, loads issued together). The groups
//    are merged by shuffles within a warp, then across warps in shared memory,
//    and the block writes its partial (m, l, acc[HS]) (unnormalised, in the
//    log2 domain) to the workspace.
//  - combine, in the same launch: each live block of a row takes a ticket
//    from the row's counter once its partial is written (fence, then
//    atomicInc, which wraps the counter back to zero on the last ticket);
//    the block that draws the last ticket merges the row's live partials,
//    out = sum_c 2^(m_c - M) acc_c / sum_c 2^(m_c - M) l_c. One launch per layer
//    instead of two (a graph-replayed decode step is launch-bound at small
//    batch); which block combines varies, the arithmetic does not, so the
//    output is the same bits every run.
// Workspace (floats), P = B * Tq * NH * nchunks partials, partial index
// p = ((b * Tq + t) * NH + h) * nchunks + c:
//   [0, 2P)            (m, l) pairs of each partial
//   [2P, 2P + P * HS)  acc rows of each partial
#include <climits>

#include "cuda_common.cuh"
#include "launch.cuh"
#include "decode.cuh"
#include "ops_attention.cuh"

namespace fw {
namespace cuda {

constexpr int kDecWarps = 4;
constexpr int kDecThreads = kDecWarps * 32;
constexpr int kDecUnroll = 4;           // keys per key group per step
constexpr int kDecMinChunk = 64;        // keys per split block, at least
constexpr int kDecMaxChunk = 512;       // and at most
constexpr long long kDecTargetBlocks = 2048;  // split blocks at full capacity, about
constexpr int kArgmaxThreads = 512;
constexpr float kLog2e = 1.4426950408889634f;

// ---------------------------------------------------------------- RoPE, append

// One thread per (b, t, h, i < HS/2), as rope_kernel in ops_rope.cu.
template <typename T>
__global__ void rope_dpos_kernel(T* x, const float* cos_t, const float* sin_t, int B, int Tq, int H, int HS,
                                 const int* d_pos) {
  const int half = HS / 2;
  const size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (idx >= (size_t)B * Tq * H * half) return;
  const int pos0 = *d_pos;
  const int i = idx % half;
  const size_t row = idx / half;  // (b, t, h) flattened
  const int t = (row / H) % Tq;
  const size_t tab = (size_t)(pos0 + t) * half + i;
  const float c = cos_t[tab], s = sin_t[tab];
  T* v = x + row * HS;
  rope_rotate<T>(to_f32(v[i]), to_f32(v[i + half]), c, s, v[i], v[i + half]);
}

template <typename T>
__global__ void kv_append_dpos_kernel(T* k_cache, T* v_cache, const T* k, const T* v, int B, int Tq, int KVH, int S,
                                      int HS, const int* d_pos) {
  const long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= (long long)B * Tq * KVH * HS) return;
  const int c = idx % HS, h = (idx / HS) % KVH, t = (idx / ((long long)HS * KVH)) % Tq;
  const int b = idx / ((long long)HS * KVH * Tq);
  const int p = *d_pos + t;
  if (p < 0 || p >= S) return;  // out of the cache: never write past it
  const long long dst = (((long long)b * KVH + h) * S + p) * HS + c;
  k_cache[dst] = k[idx];
  v_cache[dst] = v[idx];
}

// The decode step's q/k rotation and cache append in one launch: one thread
// per rotated pair (b, t, head, i < HS/2) over the NH query heads and then
// the KVH key heads. A query pair is rotated in place; a key pair is rotated
// and written to the key cache (and to k, as rope_forward_dpos would), and
// the same thread copies the matching value pair to the value cache. Same
// arithmetic as rope_dpos_kernel + kv_append_dpos_kernel.
template <typename T>
__global__ void rope_append_dpos_kernel(T* q, T* k, const T* v, T* k_cache, T* v_cache, const float* cos_t,
                                        const float* sin_t, int B, int Tq, int NH, int KVH, int S, int HS,
                                        const int* d_pos) {
  pdl_wait_then_trigger();
  const int half = HS / 2, H = NH + KVH;
  const size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (idx >= (size_t)B * Tq * H * half) return;
  const int i = idx % half;
  const int hh = (idx / half) % H;
  const size_t bt = idx / ((size_t)half * H);  // b * Tq + t
  const int t = bt % Tq, b = bt / Tq;
  const int pos = *d_pos + t;
  const size_t tab = (size_t)pos * half + i;
  const float c = cos_t[tab], s = sin_t[tab];
  if (hh < NH) {
    T* x = q + (bt * NH + hh) * HS;
    rope_rotate<T>(to_f32(x[i]), to_f32(x[i + half]), c, s, x[i], x[i + half]);
    return;
  }
  const int h = hh - NH;
  T* x = k + (bt * KVH + h) * HS;
  T r1, r2;
  rope_rotate<T>(to_f32(x[i]), to_f32(x[i + half]), c, s, r1, r2);
  x[i] = r1;
  x[i + half] = r2;
  if (pos < 0 || pos >= S) return;  // out of the cache: never write past it
  const size_t dst = (((size_t)b * KVH + h) * S + pos) * HS;
  const T* vv = v + (bt * KVH + h) * HS;
  k_cache[dst + i] = r1;
  k_cache[dst + i + half] = r2;
  v_cache[dst + i] = vv[i];
  v_cache[dst + i + half] = vv[i + half];
}

// ---------------------------------------------------------------- attention

// VEC consecutive elements of T at p (aligned to VEC * sizeof(T) bytes) are
// loaded as raw 32-bit words in one load (16 bytes at most) and converted to
// fp32 only when used, so the unrolled key loop keeps bf16 rows at half the
// registers.
template <typename T, int VEC>
struct RawVec {
  static constexpr int kBytes = VEC * (int)sizeof(T);
  static constexpr int kWords = (kBytes + 3) / 4;
  uint32_t w[kWords];
};

template <typename T, int VEC>
__device__ __forceinline__ void load_raw(const T* p, RawVec<T, VEC>& r) {
  constexpr int bytes = RawVec<T, VEC>::kBytes;
  if constexpr (bytes == 16) {
    const uint4 x = *reinterpret_cast<const uint4*>(p);
    r.w[0] = x.x;
    r.w[1] = x.y;
    r.w[2] = x.z;
    r.w[3] = x.w;
  } else if constexpr (bytes == 8) {
    const uint2 x = *reinterpret_cast<const uint2*>(p);
    r.w[0] = x.x;
    r.w[1] = x.y;
  } else if constexpr (bytes == 4) {
    r.w[0] = *reinterpret_cast<const uint32_t*>(p);
  } else {
    static_assert(bytes == 2, "vectors of 2 to 16 bytes");
    r.w[0] = *reinterpret_cast<const unsigned short*>(p);
  }
}

template <typename T, int VEC>
__device__ __forceinline__ void zero_raw(RawVec<T, VEC>& r) {
#pragma unroll
  for (int i = 0; i < RawVec<T, VEC>::kWords; i++) r.w[i] = 0u;
}

// Element e (a compile-time index once unrolled) as fp32. bf16 is the high
// half of an fp32; fp16 is converted; the element at the lower address is the
// word's low half.
template <int VEC>
__device__ __forceinline__ float elem(const RawVec<float, VEC>& r, int e) {
  return __uint_as_float(r.w[e]);
}
template <int VEC>
__device__ __forceinline__ float elem(const RawVec<bf16, VEC>& r, int e) {
  const uint32_t w = r.w[e >> 1];
  return __uint_as_float((e & 1) ? (w & 0xffff0000u) : (w << 16));
}
template <int VEC>
__device__ __forceinline__ float elem(const RawVec<f16, VEC>& r, int e) {
  const uint32_t w = r.w[e >> 1];
  return __half2float(__ushort_as_half((unsigned short)((e & 1) ? (w >> 16) : (w & 0xffffu))));
}

struct DecodeDims {
  int B, Tq, NH, KVH, S, HS;
  int chunk, nchunks;  // keys per split block, split blocks per row
  int lpk;             // lanes per key group: a power of two <= 32, lpk * VEC >= HS
  float scale_log2;    // log2(e) / sqrt(HS)
};

// Online-softmax state (log2 domain) of another key group / warp merged into
// (m, l, acc). An empty state has m = -inf, l = 0, acc = 0.
template <int VEC>
__device__ __forceinline__ void merge_state(float& m, float& l, float (&acc)[VEC], float m_o, float l_o,
                                            const float (&acc_o)[VEC]) {
  const float m_new = fmaxf(m, m_o);
  const float f = m == -INFINITY ? 0.0f : exp2f(m - m_new);
  const float f_o = m_o == -INFINITY ? 0.0f : exp2f(m_o - m_new);
  l = l * f + l_o * f_o;
#pragma unroll
  for (int e = 0; e < VEC; e++) acc[e] = acc[e] * f + acc_o[e] * f_o;
  m = m_new;
}

// Row `row`'s output from its nlive partials in ws (the last block of the
// row runs it): M = max m_c, L = sum 2^(m_c - M) l_c, out = sum 2^(m_c - M)
// acc_c / L, the partials in chunk order. The partials were written by other
// blocks: read through L2 (ld.cg), never a stale L1 line.
template <typename T>
__device__ void decode_combine_row(T* __restrict__ out, const float* ws, long long row, int nlive,
                                   const DecodeDims& d) {
  const long long nparts = (long long)d.B * d.Tq * d.NH * d.nchunks;
  const float* ml = ws + 2 * row * d.nchunks;
  const float* acc = ws + 2 * nparts + row * d.nchunks * d.HS;
  float M = -INFINITY;
  for (int c = 0; c < nlive; c++) M = fmaxf(M, __ldcg(ml + 2 * c));
  float L = 0.0f;
  for (int c = 0; c < nlive; c++) L += exp2f(__ldcg(ml + 2 * c) - M) * __ldcg(ml + 2 * c + 1);
  const float inv = 1.0f / L;
  T* o = out + row * d.HS;
  for (int cc = threadIdx.x; cc < d.HS; cc += blockDim.x) {
    float a = 0.0f;
    for (int c = 0; c < nlive; c++) a += exp2f(__ldcg(ml + 2 * c) - M) * __ldcg(acc + (long long)c * d.HS + cc);
    o[cc] = from_f32<T>(a * inv);
  }
}

// grid (Tq * NH, nchunks, B), block kDecThreads. counters: one per query
// row, zero on entry, zero again on exit.
template <typename T, int VEC>
__global__ void __launch_bounds__(kDecThreads)
    attention_decode_split_kernel(T* __restrict__ out, float* __restrict__ ws, int* __restrict__ counters,
                                  const T* __restrict__ q, const T* __restrict__ k_cache,
                                  const T* __restrict__ v_cache, const int* __restrict__ d_pos, DecodeDims d) {
  pdl_wait_then_trigger();
  const int t = blockIdx.x / d.NH, h = blockIdx.x % d.NH, c = blockIdx.y, b = blockIdx.z;
  const long long row = ((long long)b * d.Tq + t) * d.NH + h;
  const int kend = min(*d_pos + t + 1, d.S);  // keys 0..kend-1 are this row's (causal, within the cache)
  const int j_begin = c * d.chunk;
  if (j_begin >= kend) {  // past the live length: the whole block leaves
    if (c == 0) {         // a negative position: no key to attend to, no partial to combine
      for (int cc = threadIdx.x; cc < d.HS; cc += blockDim.x) out[row * d.HS + cc] = from_f32<T>(0.0f);
    }
    return;
  }
  const int j_end = min(j_begin + d.chunk, kend);
  const int nlive = (kend + d.chunk - 1) / d.chunk;  // the blocks of this row that did not leave

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int lpk = d.lpk, kpw = 32 / lpk;     // lanes per key group, key groups per warp
  const int sub = lane & (lpk - 1);          // lane within the key group
  const int g = warp * kpw + lane / lpk;     // key group within the block
  const int kpb = kDecWarps * kpw;           // key groups per block
  const int c0 = sub * VEC;                  // this lane's first head dim
  const bool active = c0 < d.HS;             // lanes past HS only join the shuffles
  const int kvh = h / (d.NH / d.KVH);

  float qv[VEC];
  {
    RawVec<T, VEC> rq;
    if (active) load_raw(q + row * d.HS + c0, rq);
    else zero_raw(rq);
#pragma unroll
    for (int e = 0; e < VEC; e++) qv[e] = elem(rq, e) * d.scale_log2;
  }
  const long long head_off = ((long long)b * d.KVH + kvh) * d.S * d.HS + c0;
  const T* kp = k_cache + head_off;
  const T* vp = v_cache + head_off;

  float m = -INFINITY, l = 0.0f, acc[VEC];
#pragma unroll
  for (int e = 0; e < VEC; e++) acc[e] = 0.0f;

  for (int j0 = j_begin; j0 < j_end; j0 += kpb * kDecUnroll) {
    RawVec<T, VEC> kr[kDecUnroll], vr[kDecUnroll];
    float s[kDecUnroll];
#pragma unroll
    for (int u = 0; u < kDecUnroll; u++) {  // all loads of the step in flight together
      const int j = j0 + u * kpb + g;
      if (active && j < j_end) {
        load_raw(kp + (long long)j * d.HS, kr[u]);
        load_raw(vp + (long long)j * d.HS, vr[u]);
      } else {
        zero_raw(kr[u]);
        zero_raw(vr[u]);
      }
    }
#pragma unroll
    for (int u = 0; u < kDecUnroll; u++) {
      float dot = 0.0f;
#pragma unroll
      for (int e = 0; e < VEC; e++) dot = fmaf(qv[e], elem(kr[u], e), dot);
      s[u] = dot;
    }
    // Sum over the key group's lpk lanes (xor offsets below lpk stay inside
    // the group); every lane of the warp takes part.
    for (int o = lpk >> 1; o > 0; o >>= 1) {
#pragma unroll
      for (int u = 0; u < kDecUnroll; u++) s[u] += __shfl_xor_sync(0xffffffffu, s[u], o);
    }
    float smax = -INFINITY;
#pragma unroll
    for (int u = 0; u < kDecUnroll; u++) {
      if (j0 + u * kpb + g >= j_end) s[u] = -INFINITY;  // uniform within the key group
      smax = fmaxf(smax, s[u]);
    }
    if (smax != -INFINITY) {  // no shuffles inside: key groups may diverge here
      const float m_new = fmaxf(m, smax);
      const float corr = exp2f(m - m_new);  // m = -inf: 0
      l *= corr;
#pragma unroll
      for (int e = 0; e < VEC; e++) acc[e] *= corr;
#pragma unroll
      for (int u = 0; u < kDecUnroll; u++) {
        const float p = exp2f(s[u] - m_new);  // masked (-inf): 0
        l += p;
#pragma unroll
        for (int e = 0; e < VEC; e++) acc[e] = fmaf(p, elem(vr[u], e), acc[e]);
      }
      m = m_new;
    }
  }

  // Merge the key groups of the warp: lanes lane and lane ^ o (o >= lpk) hold
  // the same head dims of two different groups.
  for (int o = lpk; o < 32; o <<= 1) {
    const float m_o = __shfl_xor_sync(0xffffffffu, m, o), l_o = __shfl_xor_sync(0xffffffffu, l, o);
    float acc_o[VEC];
#pragma unroll
    for (int e = 0; e < VEC; e++) acc_o[e] = __shfl_xor_sync(0xffffffffu, acc[e], o);
    merge_state<VEC>(m, l, acc, m_o, l_o, acc_o);
  }

  // Then the warps, through shared memory. Key 0 of the chunk belongs to key
  // group 0 of warp 0, so the block's max is finite.
  __shared__ float s_m[kDecWarps], s_l[kDecWarps];
  __shared__ float s_acc[kDecWarps][kAttentionMaxHS];
  if (lane < lpk && active) {
#pragma unroll
    for (int e = 0; e < VEC; e++) s_acc[warp][c0 + e] = acc[e];
  }
  if (lane == 0) {
    s_m[warp] = m;
    s_l[warp] = l;
  }
  __syncthreads();
  float M = s_m[0];
#pragma unroll
  for (int w = 1; w < kDecWarps; w++) M = fmaxf(M, s_m[w]);
  float f[kDecWarps];
#pragma unroll
  for (int w = 0; w < kDecWarps; w++) f[w] = s_m[w] == -INFINITY ? 0.0f : exp2f(s_m[w] - M);
  const long long part = row * d.nchunks + c;
  const long long nparts = (long long)d.B * d.Tq * d.NH * d.nchunks;
  float* ws_acc = ws + 2 * nparts + part * d.HS;
  for (int cc = threadIdx.x; cc < d.HS; cc += blockDim.x) {
    float a = 0.0f;
#pragma unroll
    for (int w = 0; w < kDecWarps; w++) a += f[w] * s_acc[w][cc];
    ws_acc[cc] = a;
  }
  if (threadIdx.x == 0) {
    float L = 0.0f;
#pragma unroll
    for (int w = 0; w < kDecWarps; w++) L += f[w] * s_l[w];
    ws[2 * part] = M;
    ws[2 * part + 1] = L;
  }

  // The partial is out: make it visible device-wide, then draw a ticket.
  __threadfence();
  __syncthreads();
  __shared__ bool s_last;
  // atomicInc wraps to 0 on the last ticket: the counter is zero again for
  // the next call with no separate reset (and a counter left off by misuse,
  // two streams at once, recovers after one call instead of never matching)
  if (threadIdx.x == 0)
    s_last = atomicInc(reinterpret_cast<unsigned*>(&counters[row]), (unsigned)(nlive - 1)) == (unsigned)(nlive - 1);
  __syncthreads();
  if (!s_last) return;
  __threadfence();  // every other block's partial is visible to this one
  decode_combine_row<T>(out, ws, row, nlive, d);
}

// Keys per split block: the smallest power of two >= kDecMinChunk that keeps
// the split grid near kDecTargetBlocks blocks at full capacity. A pure
// function of the sizes, so the workspace query agrees with the launch.
static int decode_chunk(long long rows, int S) {
  int chunk = kDecMinChunk;
  while (chunk < kDecMaxChunk && rows * (long long)ceil_div(S, chunk) > kDecTargetBlocks) chunk *= 2;
  return chunk;
}

size_t attention_decode_workspace_floats(int B, int Tq, int NH, int S, int HS) {
  if (B <= 0 || Tq <= 0 || NH <= 0 || S <= 0 || HS <= 0) return 0;
  const long long rows = (long long)B * Tq * NH;
  const long long nchunks = ceil_div(S, decode_chunk(rows, S));
  return (size_t)(rows * nchunks * (HS + 2));
}

static bool aligned_to(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

size_t attention_decode_counters(int B, int Tq, int NH) {
  if (B <= 0 || Tq <= 0 || NH <= 0) return 0;
  return (size_t)B * Tq * NH;
}

template <typename T, int VEC>
static void decode_launch(T* out, const T* q, const T* k_cache, const T* v_cache, const int* d_pos, float* ws,
                          int* counters, const DecodeDims& d, cudaStream_t stream) {
  const dim3 grid((unsigned)(d.Tq * d.NH), (unsigned)d.nchunks, (unsigned)d.B);
  launch_pdl(attention_decode_split_kernel<T, VEC>, grid, dim3(kDecThreads), stream, out, ws, counters, q, k_cache,
             v_cache, d_pos, d);
}

template <typename T>
void attention_decode_dpos(T* out, const T* q, const T* k_cache, const T* v_cache, int B, int Tq, int NH, int KVH,
                           int S, int HS, const int* d_pos, float* workspace, int* counters, cudaStream_t stream) {
  FW_CHECK(HS > 0 && HS <= kAttentionMaxHS, kUnsupported,
           "attention_decode_dpos: head_dim " << HS << " outside 1.." << kAttentionMaxHS);
  FW_CHECK(KVH > 0 && NH % KVH == 0, kInvalidArgument,
           "attention_decode_dpos: num_attention_heads " << NH << " is not a multiple of num_key_value_heads "
                                                         << KVH);
  FW_CHECK(B >= 0 && Tq >= 0 && S > 0, kInvalidArgument,
           "attention_decode_dpos: bad sizes B " << B << " Tq " << Tq << " S " << S);
  if (B == 0 || Tq == 0) return;
  FW_CHECK(workspace != nullptr && counters != nullptr && d_pos != nullptr, kInvalidArgument,
           "attention_decode_dpos: null workspace, counters or position");
  DecodeDims d{};
  d.B = B;
  d.Tq = Tq;
  d.NH = NH;
  d.KVH = KVH;
  d.S = S;
  d.HS = HS;
  d.chunk = decode_chunk((long long)B * Tq * NH, S);
  d.nchunks = (int)ceil_div(S, d.chunk);
  d.scale_log2 = kLog2e / sqrtf((float)HS);
  FW_CHECK(B <= 65535 && d.nchunks <= 65535 && (long long)Tq * NH <= INT_MAX &&
               (long long)B * Tq * NH <= INT_MAX,
           kUnsupported, "attention_decode_dpos: sizes B " << B << " Tq " << Tq << " NH " << NH << " S " << S
                                                           << " exceed the launch grid");

  // The widest vector (16 bytes down to one element) that divides HS, that
  // every row start is aligned to, and that fits a head in 32 lanes.
  for (int vec = 16 / (int)sizeof(T); vec >= 1; vec /= 2) {
    const size_t bytes = vec * sizeof(T);
    if (HS % vec != 0 || !aligned_to(q, bytes) || !aligned_to(k_cache, bytes) || !aligned_to(v_cache, bytes))
      continue;
    int lpk = 1;
    while (lpk * vec < HS) lpk *= 2;
    if (lpk > 32) break;  // narrower vectors need even more lanes
    d.lpk = lpk;
    switch (vec) {
      case 8:
        if constexpr (sizeof(T) == 2)
          return decode_launch<T, 8>(out, q, k_cache, v_cache, d_pos, workspace, counters, d, stream);
        break;
      case 4: return decode_launch<T, 4>(out, q, k_cache, v_cache, d_pos, workspace, counters, d, stream);
      case 2: return decode_launch<T, 2>(out, q, k_cache, v_cache, d_pos, workspace, counters, d, stream);
      case 1: return decode_launch<T, 1>(out, q, k_cache, v_cache, d_pos, workspace, counters, d, stream);
    }
  }
  FW_CHECK(false, kUnsupported,
           "attention_decode_dpos: head_dim " << HS << " with these pointer alignments needs more than 32 lanes"
                                              << " per key");
}

// ---------------------------------------------------------------- argmax, ints

// (value, index) b beats a: larger value, or equal value and lower index.
__device__ __forceinline__ void argmax_merge(float& best, int& idx, float b_best, int b_idx) {
  if (b_best > best || (b_best == best && b_idx < idx)) {
    best = b_best;
    idx = b_idx;
  }
}

// grid (N), block kArgmaxThreads.
template <typename T>
__global__ void __launch_bounds__(kArgmaxThreads) argmax_rows_kernel(int32_t* out, const T* logits, int V) {
  pdl_wait_then_trigger();
  const T* row = logits + (size_t)blockIdx.x * V;
  float best = -INFINITY;
  int idx = INT_MAX;
  for (int i = threadIdx.x; i < V; i += blockDim.x) argmax_merge(best, idx, to_f32(row[i]), i);  // NaN never wins
  for (int o = 16; o > 0; o >>= 1) {
    const float b_best = __shfl_xor_sync(0xffffffffu, best, o);
    const int b_idx = __shfl_xor_sync(0xffffffffu, idx, o);
    argmax_merge(best, idx, b_best, b_idx);
  }
  __shared__ float s_best[kArgmaxThreads / 32];
  __shared__ int s_idx[kArgmaxThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    s_best[warp] = best;
    s_idx[warp] = idx;
  }
  __syncthreads();
  if (warp == 0) {
    const int nwarps = blockDim.x >> 5;
    best = lane < nwarps ? s_best[lane] : -INFINITY;
    idx = lane < nwarps ? s_idx[lane] : INT_MAX;
    for (int o = 16; o > 0; o >>= 1) {
      const float b_best = __shfl_xor_sync(0xffffffffu, best, o);
      const int b_idx = __shfl_xor_sync(0xffffffffu, idx, o);
      argmax_merge(best, idx, b_best, b_idx);
    }
    if (lane == 0) out[blockIdx.x] = idx == INT_MAX ? 0 : idx;  // all NaN: 0
  }
}

__global__ void set_int_kernel(int* d, int value) { *d = value; }
__global__ void add_int_kernel(int* d, int delta) {
  pdl_wait_then_trigger();
  *d += delta;
}

// ---------------------------------------------------------------- host

template <typename T>
void rope_forward_dpos(T* x, const float* cos_t, const float* sin_t, int B, int Tq, int H, int HS, const int* d_pos,
                       cudaStream_t stream) {
  FW_CHECK(HS % 2 == 0, kInvalidArgument, "rope_forward_dpos: head_dim " << HS << " must be even");
  const size_t n = (size_t)B * Tq * H * (HS / 2);
  if (n == 0) return;
  rope_dpos_kernel<T><<<ceil_div(n, 256), 256, 0, stream>>>(x, cos_t, sin_t, B, Tq, H, HS, d_pos);
  FW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void kv_cache_append_dpos(T* k_cache, T* v_cache, const T* k, const T* v, int B, int Tq, int KVH, int S, int HS,
                          const int* d_pos, cudaStream_t stream) {
  FW_CHECK(Tq <= S, kInvalidArgument,
           "kv_cache_append_dpos: " << Tq << " tokens exceed the cache capacity " << S);
  const long long n = (long long)B * Tq * KVH * HS;
  if (n == 0) return;
  kv_append_dpos_kernel<T><<<ceil_div(n, 256), 256, 0, stream>>>(k_cache, v_cache, k, v, B, Tq, KVH, S, HS, d_pos);
  FW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void rope_append_dpos(T* q, T* k, const T* v, T* k_cache, T* v_cache, const float* cos_t, const float* sin_t, int B,
                      int Tq, int NH, int KVH, int S, int HS, const int* d_pos, cudaStream_t stream) {
  FW_CHECK(HS % 2 == 0, kInvalidArgument, "rope_append_dpos: head_dim " << HS << " must be even");
  FW_CHECK(Tq <= S, kInvalidArgument, "rope_append_dpos: " << Tq << " tokens exceed the cache capacity " << S);
  const size_t n = (size_t)B * Tq * (NH + KVH) * (HS / 2);
  if (n == 0) return;
  launch_pdl(rope_append_dpos_kernel<T>, dim3(ceil_div(n, 256)), dim3(256), stream, q, k, v, k_cache, v_cache, cos_t,
             sin_t, B, Tq, NH, KVH, S, HS, d_pos);
}

template <typename T>
void argmax_rows(int32_t* out, const T* logits, int N, int V, cudaStream_t stream) {
  FW_CHECK(N >= 0 && V > 0, kInvalidArgument, "argmax_rows: bad sizes N " << N << " V " << V);
  if (N == 0) return;
  launch_pdl(argmax_rows_kernel<T>, dim3(N), dim3(kArgmaxThreads), stream, out, logits, V);
}

void set_device_int(int* d, int value, cudaStream_t stream) {
  set_int_kernel<<<1, 1, 0, stream>>>(d, value);
  FW_CUDA_CHECK_LAUNCH();
}

void add_device_int(int* d, int delta, cudaStream_t stream) {
  launch_pdl(add_int_kernel, dim3(1), dim3(1), stream, d, delta);
}

#define FW_DECODE_INSTANTIATE(T)                                                                                  \
  template void rope_forward_dpos<T>(T*, const float*, const float*, int, int, int, int, const int*,               \
                                     cudaStream_t);                                                               \
  template void kv_cache_append_dpos<T>(T*, T*, const T*, const T*, int, int, int, int, int, const int*,           \
                                        cudaStream_t);                                                            \
  template void attention_decode_dpos<T>(T*, const T*, const T*, const T*, int, int, int, int, int, int,           \
                                         const int*, float*, int*, cudaStream_t);                                  \
  template void argmax_rows<T>(int32_t*, const T*, int, int, cudaStream_t);                                     \
  template void rope_append_dpos<T>(T*, T*, const T*, T*, T*, const float*, const float*, int, int, int, int, int, \
                                    int, const int*, cudaStream_t);
FW_DECODE_INSTANTIATE(float)
FW_DECODE_INSTANTIATE(bf16)
FW_DECODE_INSTANTIATE(f16)
#undef FW_DECODE_INSTANTIATE

}  // namespace cuda
}  // namespace fw
