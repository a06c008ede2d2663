// ops_attention.cu: tiled causal GQA attention, forward, backward and decode.
//
// A flash-attention-style algorithm (Dao et al.) on plain CUDA cores, fp32
// arithmetic whatever the storage type:
//  - forward: a block owns kBr query rows of one head (kRowsPerWarp per
//    warp) and walks the keys in tiles of kBc = 32 held in shared memory.
//    Lane j scores key j of the tile against a row; the row keeps a running
//    max m, sum l and output accumulator (lane owns dims lane + 32 d),
//    rescaled when m grows. Only lse = m + log l is stored per row.
//  - backward: D = rowsum(dout * out) first; then one kernel per kv head
//    and key tile accumulates dk, dv over every query row and every query head
//    of the group (so GQA needs no atomics), and one kernel per query tile
//    accumulates dq, both recomputing P = exp(S - lse) tile by tile.
// Every kernel addresses q/k/v through strides (AttnDims), so the forward
// kernel also runs decode against the KV cache layout (B, KVH, S, HS), with
// query row t at absolute position offset + t seeing keys 0..offset+t.
// Not tensor-core code: this is the correct, sanitizer-clean baseline the
// parity tests pin (and the fp32 path). bf16 training attention with HS 64 or
// 128 dispatches to the tensor-core kernels of ops_attention_tc.cu instead.
#include <type_traits>

#include "cuda_common.cuh"
#include "ops_attention.cuh"
#include "ops_attention_tc.cuh"

namespace fw {
namespace cuda {

constexpr int kBc = 32;                         // keys per tile (one per lane)
constexpr int kWarps = 4;                       // warps per forward / dq block
constexpr int kRowsPerWarp = 4;                 // query rows per warp
constexpr int kBr = kWarps * kRowsPerWarp;      // query rows per block
constexpr int kDpl = kAttentionMaxHS / 32;      // head dims per lane

// Element strides of one attention call. Head h of token t of batch b of q
// is at q + b*q_sb + t*q_st + h*HS (heads contiguous within a token, as in
// (B, T, NH, HS)); k and v share k_sb, k_st, k_sh (head stride).
struct AttnDims {
  int B, Tq, Tk, NH, KVH, HS, offset;
  long long q_sb, q_st;
  long long k_sb, k_st, k_sh;
  float scale;
};

// Shared memory layout of the forward / dq kernels (floats): Qs (kBr, HS),
// dOs (kBr, HS) [dq only], Ks and Vs (kBc, HS + 1), the +1 making lane j's
// row walk conflict-free.
static size_t rows_smem_floats(int HS, bool with_dout) {
  return (size_t)kBr * HS * (with_dout ? 2 : 1) + 2 * (size_t)kBc * (HS + 1);
}

template <typename T>
__device__ void load_kv_tile(float* Ks, float* Vs, const T* k, const T* v, const AttnDims& d, int b, int kvh,
                             int j0) {
  const int ld = d.HS + 1;
  for (int idx = threadIdx.x; idx < kBc * d.HS; idx += blockDim.x) {
    const int jj = idx / d.HS, c = idx % d.HS, j = j0 + jj;
    float kv = 0.0f, vv = 0.0f;
    if (j < d.Tk) {
      const long long off = b * d.k_sb + (long long)j * d.k_st + kvh * d.k_sh + c;
      kv = to_f32(k[off]);
      vv = to_f32(v[off]);
    }
    Ks[jj * ld + c] = kv;
    Vs[jj * ld + c] = vv;
  }
}

// grid (ceil(Tq / kBr), NH, B), block kWarps * 32, dynamic smem rows_smem_floats(HS, false).
template <typename T>
__global__ void __launch_bounds__(kWarps * 32)
    attention_forward_kernel(T* out, float* lse, const T* q, const T* k, const T* v, AttnDims d) {
  extern __shared__ float smem[];
  float* Qs = smem;                  // (kBr, HS), pre-scaled
  float* Ks = Qs + kBr * d.HS;       // (kBc, HS + 1)
  float* Vs = Ks + kBc * (d.HS + 1);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * kBr;
  const int kvh = h / (d.NH / d.KVH), ld = d.HS + 1;

  for (int idx = threadIdx.x; idx < kBr * d.HS; idx += blockDim.x) {
    const int r = idx / d.HS, c = idx % d.HS, i = i0 + r;
    Qs[idx] = i < d.Tq ? to_f32(q[b * d.q_sb + (long long)i * d.q_st + (long long)h * d.HS + c]) * d.scale : 0.0f;
  }
  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kDpl];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++) {
    m[rr] = -INFINITY;
    l[rr] = 0.0f;
#pragma unroll
    for (int dd = 0; dd < kDpl; dd++) acc[rr][dd] = 0.0f;
  }
  const int i_last = min(i0 + kBr, d.Tq) - 1;
  const int kend = min(d.Tk, d.offset + i_last + 1);  // causal: no key past the block's last row
  for (int j0 = 0; j0 < kend; j0 += kBc) {
    __syncthreads();  // previous tile fully consumed (and Qs written, first time)
    load_kv_tile(Ks, Vs, k, v, d, b, kvh, j0);
    __syncthreads();
    const int j = j0 + lane;
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; rr++) {
      const int r = warp * kRowsPerWarp + rr, i = i0 + r;
      if (i >= d.Tq) continue;  // warp-uniform
      float s = -INFINITY;
      if (j < d.Tk && j <= d.offset + i) {
        const float* qr = Qs + r * d.HS;
        const float* kr = Ks + lane * ld;
        float dot = 0.0f;
        for (int c = 0; c < d.HS; c++) dot += qr[c] * kr[c];
        s = dot;
      }
      const float tile_max = warp_max(s);
      if (tile_max == -INFINITY) continue;  // row sees no key of this tile (warp-uniform)
      const float m_new = fmaxf(m[rr], tile_max);
      const float p = s == -INFINITY ? 0.0f : __expf(s - m_new);
      const float corr = m[rr] == -INFINITY ? 0.0f : __expf(m[rr] - m_new);
      l[rr] = l[rr] * corr + warp_sum(p);
      m[rr] = m_new;
#pragma unroll
      for (int dd = 0; dd < kDpl; dd++) acc[rr][dd] *= corr;
      for (int jj = 0; jj < kBc; jj++) {
        const float pj = __shfl_sync(0xffffffffu, p, jj);
        const float* vr = Vs + jj * ld;
#pragma unroll
        for (int dd = 0; dd < kDpl; dd++) {
          const int c = lane + 32 * dd;
          if (c < d.HS) acc[rr][dd] += pj * vr[c];
        }
      }
    }
  }
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++) {
    const int i = i0 + warp * kRowsPerWarp + rr;
    if (i >= d.Tq) continue;
    // Every query row sees at least key 0 (positions are >= 0), so l > 0.
    const float inv = 1.0f / l[rr];
    T* o = out + b * d.q_sb + (long long)i * d.q_st + (long long)h * d.HS;
#pragma unroll
    for (int dd = 0; dd < kDpl; dd++) {
      const int c = lane + 32 * dd;
      if (c < d.HS) o[c] = from_f32<T>(acc[rr][dd] * inv);
    }
    if (lse && lane == 0) lse[((long long)b * d.NH + h) * d.Tq + i] = m[rr] + logf(l[rr]);
  }
}

// D (B, NH, Tq) = rowsum(dout * out); one warp per (b, i, h) row.
template <typename T>
__global__ void attention_backward_dot_kernel(float* D, const T* dout, const T* out, AttnDims d) {
  const int lane = threadIdx.x & 31;
  const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= (long long)d.B * d.Tq * d.NH) return;
  const int h = row % d.NH, i = (row / d.NH) % d.Tq, b = row / ((long long)d.NH * d.Tq);
  const long long off = b * d.q_sb + (long long)i * d.q_st + (long long)h * d.HS;
  float s = 0.0f;
  for (int c = lane; c < d.HS; c += 32) s += to_f32(dout[off + c]) * to_f32(out[off + c]);
  s = warp_sum(s);
  if (lane == 0) D[((long long)b * d.NH + h) * d.Tq + i] = s;
}

// dq: grid (ceil(Tq / kBr), NH, B), block kWarps * 32, smem rows_smem_floats(HS, true).
// dS_ij = P_ij (dP_ij - D_i), dP = dout v^T, dq_i = scale * sum_j dS_ij k_j.
template <typename T>
__global__ void __launch_bounds__(kWarps * 32)
    attention_backward_dq_kernel(T* dq, const T* dout, const float* lse, const float* D, const T* q, const T* k,
                                 const T* v, AttnDims d) {
  extern __shared__ float smem[];
  float* Qs = smem;                   // (kBr, HS), pre-scaled
  float* dOs = Qs + kBr * d.HS;       // (kBr, HS)
  float* Ks = dOs + kBr * d.HS;       // (kBc, HS + 1)
  float* Vs = Ks + kBc * (d.HS + 1);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int b = blockIdx.z, h = blockIdx.y, i0 = blockIdx.x * kBr;
  const int kvh = h / (d.NH / d.KVH), ld = d.HS + 1;

  for (int idx = threadIdx.x; idx < kBr * d.HS; idx += blockDim.x) {
    const int r = idx / d.HS, c = idx % d.HS, i = i0 + r;
    const long long off = b * d.q_sb + (long long)i * d.q_st + (long long)h * d.HS + c;
    Qs[idx] = i < d.Tq ? to_f32(q[off]) * d.scale : 0.0f;
    dOs[idx] = i < d.Tq ? to_f32(dout[off]) : 0.0f;
  }
  float lse_r[kRowsPerWarp], D_r[kRowsPerWarp], acc[kRowsPerWarp][kDpl];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++) {
    const int i = i0 + warp * kRowsPerWarp + rr;
    const long long ri = ((long long)b * d.NH + h) * d.Tq + i;
    lse_r[rr] = i < d.Tq ? lse[ri] : 0.0f;
    D_r[rr] = i < d.Tq ? D[ri] : 0.0f;
#pragma unroll
    for (int dd = 0; dd < kDpl; dd++) acc[rr][dd] = 0.0f;
  }
  const int i_last = min(i0 + kBr, d.Tq) - 1;
  const int kend = min(d.Tk, d.offset + i_last + 1);
  for (int j0 = 0; j0 < kend; j0 += kBc) {
    __syncthreads();
    load_kv_tile(Ks, Vs, k, v, d, b, kvh, j0);
    __syncthreads();
    const int j = j0 + lane;
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; rr++) {
      const int r = warp * kRowsPerWarp + rr, i = i0 + r;
      if (i >= d.Tq) continue;
      float ds = 0.0f;
      if (j < d.Tk && j <= d.offset + i) {
        const float* qr = Qs + r * d.HS;
        const float* dor = dOs + r * d.HS;
        const float* kr = Ks + lane * ld;
        const float* vr = Vs + lane * ld;
        float s = 0.0f, dp = 0.0f;
        for (int c = 0; c < d.HS; c++) {
          s += qr[c] * kr[c];
          dp += dor[c] * vr[c];
        }
        ds = __expf(s - lse_r[rr]) * (dp - D_r[rr]);
      }
      for (int jj = 0; jj < kBc; jj++) {
        const float dsj = __shfl_sync(0xffffffffu, ds, jj);
        const float* kr = Ks + jj * ld;
#pragma unroll
        for (int dd = 0; dd < kDpl; dd++) {
          const int c = lane + 32 * dd;
          if (c < d.HS) acc[rr][dd] += dsj * kr[c];
        }
      }
    }
  }
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++) {
    const int i = i0 + warp * kRowsPerWarp + rr;
    if (i >= d.Tq) continue;
    T* o = dq + b * d.q_sb + (long long)i * d.q_st + (long long)h * d.HS;
#pragma unroll
    for (int dd = 0; dd < kDpl; dd++) {
      const int c = lane + 32 * dd;
      if (c < d.HS) o[c] = from_f32<T>(acc[rr][dd] * d.scale);
    }
  }
}

// dk, dv: grid (ceil(Tk / kBc), KVH, B), one warp per block; lane j owns key
// j0 + j. smem floats: 4 * kBc * (HS + 1) (K, V, dK, dV) + 2 * HS (q, dout row).
// dV_j = sum_i P_ij dout_i, dK_j = sum_i dS_ij (scale q_i), over every query
// row i >= j - offset of every query head of the group.
template <typename T>
__global__ void __launch_bounds__(32)
    attention_backward_dkdv_kernel(T* dk, T* dv, const T* dout, const float* lse, const float* D, const T* q,
                                   const T* k, const T* v, AttnDims d) {
  extern __shared__ float smem[];
  const int ld = d.HS + 1;
  float* Ks = smem;
  float* Vs = Ks + kBc * ld;
  float* dKs = Vs + kBc * ld;
  float* dVs = dKs + kBc * ld;
  float* qrow = dVs + kBc * ld;  // (HS) pre-scaled
  float* dorow = qrow + d.HS;    // (HS)
  const int lane = threadIdx.x;
  const int b = blockIdx.z, kvh = blockIdx.y, j0 = blockIdx.x * kBc;
  const int group = d.NH / d.KVH;

  load_kv_tile(Ks, Vs, k, v, d, b, kvh, j0);
  for (int idx = lane; idx < kBc * ld; idx += 32) {
    dKs[idx] = 0.0f;
    dVs[idx] = 0.0f;
  }
  __syncwarp();
  const int j = j0 + lane;
  const float* kr = Ks + lane * ld;
  const float* vr = Vs + lane * ld;
  float* dkr = dKs + lane * ld;
  float* dvr = dVs + lane * ld;
  const int i_first = max(0, j0 - d.offset);  // earlier rows see none of these keys
  for (int g = 0; g < group; g++) {
    const int h = kvh * group + g;
    for (int i = i_first; i < d.Tq; i++) {
      const long long off = b * d.q_sb + (long long)i * d.q_st + (long long)h * d.HS;
      for (int c = lane; c < d.HS; c += 32) {
        qrow[c] = to_f32(q[off + c]) * d.scale;
        dorow[c] = to_f32(dout[off + c]);
      }
      __syncwarp();
      if (j < d.Tk && j <= d.offset + i) {
        const long long ri = ((long long)b * d.NH + h) * d.Tq + i;
        float s = 0.0f, dp = 0.0f;
        for (int c = 0; c < d.HS; c++) {
          s += qrow[c] * kr[c];
          dp += dorow[c] * vr[c];
        }
        const float p = __expf(s - lse[ri]);
        const float ds = p * (dp - D[ri]);
        for (int c = 0; c < d.HS; c++) {
          dvr[c] += p * dorow[c];
          dkr[c] += ds * qrow[c];
        }
      }
      __syncwarp();  // qrow / dorow are overwritten by the next row
    }
  }
  __syncwarp();  // dKs / dVs rows are read back by other lanes
  // Write back coalesced: row by row, lanes along the head dims.
  for (int jj = 0; jj < kBc && j0 + jj < d.Tk; jj++) {
    const long long off = b * d.k_sb + (long long)(j0 + jj) * d.k_st + (long long)kvh * d.k_sh;
    for (int c = lane; c < d.HS; c += 32) {
      dk[off + c] = from_f32<T>(dKs[jj * ld + c]);
      dv[off + c] = from_f32<T>(dVs[jj * ld + c]);
    }
  }
}

template <typename T>
__global__ void kv_cache_append_kernel(T* k_cache, T* v_cache, const T* k, const T* v, int B, int Tq, int KVH, int S,
                                       int HS, int pos0) {
  const long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= (long long)B * Tq * KVH * HS) return;
  const int c = idx % HS, h = (idx / HS) % KVH, t = (idx / ((long long)HS * KVH)) % Tq;
  const int b = idx / ((long long)HS * KVH * Tq);
  const long long dst = (((long long)b * KVH + h) * S + pos0 + t) * HS + c;
  k_cache[dst] = k[idx];
  v_cache[dst] = v[idx];
}

static void check_dims(int NH, int KVH, int HS, const char* what) {
  FW_CHECK(HS > 0 && HS <= kAttentionMaxHS, kUnsupported,
           what << ": head_dim " << HS << " outside 1.." << kAttentionMaxHS);
  FW_CHECK(KVH > 0 && NH % KVH == 0, kInvalidArgument,
           what << ": num_attention_heads " << NH << " is not a multiple of num_key_value_heads " << KVH);
}

// Opt in to more than 48 KiB of dynamic shared memory when a kernel needs it.
template <typename K>
static void set_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024) FW_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                            (int)bytes));
}

template <typename T>
static void forward_launch(T* out, float* lse, const T* q, const T* k, const T* v, const AttnDims& d,
                           cudaStream_t stream) {
  if (d.B == 0 || d.Tq == 0) return;
  const size_t smem = rows_smem_floats(d.HS, false) * sizeof(float);
  set_smem(attention_forward_kernel<T>, smem);
  dim3 grid(ceil_div(d.Tq, kBr), d.NH, d.B);
  attention_forward_kernel<T><<<grid, kWarps * 32, smem, stream>>>(out, lse, q, k, v, d);
  FW_CUDA_CHECK_LAUNCH();
}

static AttnDims training_dims(int B, int T_, int NH, int KVH, int HS) {
  AttnDims d{};
  d.B = B;
  d.Tq = d.Tk = T_;
  d.NH = NH;
  d.KVH = KVH;
  d.HS = HS;
  d.offset = 0;
  d.q_st = (long long)NH * HS;
  d.q_sb = d.q_st * T_;
  d.k_sh = HS;
  d.k_st = (long long)KVH * HS;
  d.k_sb = d.k_st * T_;
  d.scale = 1.0f / sqrtf((float)HS);
  return d;
}

template <typename T>
void attention_forward(T* out, float* lse, const T* q, const T* k, const T* v, int B, int T_, int NH, int KVH,
                       int HS, cudaStream_t stream) {
  check_dims(NH, KVH, HS, "attention_forward");
  if constexpr (std::is_same<T, bf16>::value) {
    if (attention_tc_supported(HS, out, q, k, v)) {
      attention_forward_tc(out, lse, q, k, v, B, T_, NH, KVH, HS, stream);
      return;
    }
  }
  forward_launch(out, lse, q, k, v, training_dims(B, T_, NH, KVH, HS), stream);
}

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, float* scratch, const T* dout, const T* out, const float* lse,
                        const T* q, const T* k, const T* v, int B, int T_, int NH, int KVH, int HS,
                        cudaStream_t stream) {
  check_dims(NH, KVH, HS, "attention_backward");
  if (B == 0 || T_ == 0) return;
  const AttnDims d = training_dims(B, T_, NH, KVH, HS);
  const long long rows = (long long)B * T_ * NH;
  attention_backward_dot_kernel<T><<<ceil_div(rows, 8), 256, 0, stream>>>(scratch, dout, out, d);
  FW_CUDA_CHECK_LAUNCH();

  if constexpr (std::is_same<T, bf16>::value) {
    if (attention_tc_supported(HS, dq, dk, dv, dout, q, k, v)) {
      attention_backward_tc(dq, dk, dv, scratch, dout, lse, q, k, v, B, T_, NH, KVH, HS, stream);
      return;
    }
  }

  const size_t smem_q = rows_smem_floats(HS, true) * sizeof(float);
  set_smem(attention_backward_dq_kernel<T>, smem_q);
  attention_backward_dq_kernel<T><<<dim3(ceil_div(T_, kBr), NH, B), kWarps * 32, smem_q, stream>>>(
      dq, dout, lse, scratch, q, k, v, d);
  FW_CUDA_CHECK_LAUNCH();

  const size_t smem_kv = (4 * (size_t)kBc * (HS + 1) + 2 * (size_t)HS) * sizeof(float);
  set_smem(attention_backward_dkdv_kernel<T>, smem_kv);
  attention_backward_dkdv_kernel<T><<<dim3(ceil_div(T_, kBc), KVH, B), 32, smem_kv, stream>>>(
      dk, dv, dout, lse, scratch, q, k, v, d);
  FW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void kv_cache_append(T* k_cache, T* v_cache, const T* k, const T* v, int B, int Tq, int KVH, int S, int HS, int pos0,
                     cudaStream_t stream) {
  FW_CHECK(pos0 >= 0 && pos0 + Tq <= S, kInvalidArgument,
           "kv_cache_append: positions " << pos0 << ".." << pos0 + Tq << " exceed the cache capacity " << S);
  const long long n = (long long)B * Tq * KVH * HS;
  if (n == 0) return;
  kv_cache_append_kernel<T><<<ceil_div(n, 256), 256, 0, stream>>>(k_cache, v_cache, k, v, B, Tq, KVH, S, HS, pos0);
  FW_CUDA_CHECK_LAUNCH();
}

template <typename T>
void attention_cached_forward(T* out, float* lse, const T* q, const T* k_cache, const T* v_cache, int B, int Tq,
                              int NH, int KVH, int S, int HS, int pos0, cudaStream_t stream) {
  check_dims(NH, KVH, HS, "attention_cached_forward");
  FW_CHECK(pos0 >= 0 && pos0 + Tq <= S, kInvalidArgument,
           "attention_cached_forward: positions " << pos0 << ".." << pos0 + Tq << " exceed the cache capacity "
                                                  << S);
  AttnDims d{};
  d.B = B;
  d.Tq = Tq;
  d.Tk = pos0 + Tq;
  d.NH = NH;
  d.KVH = KVH;
  d.HS = HS;
  d.offset = pos0;
  d.q_st = (long long)NH * HS;
  d.q_sb = d.q_st * Tq;
  d.k_st = HS;
  d.k_sh = (long long)S * HS;
  d.k_sb = d.k_sh * KVH;
  d.scale = 1.0f / sqrtf((float)HS);
  forward_launch(out, lse, q, k_cache, v_cache, d, stream);
}

#define FW_ATTENTION_INSTANTIATE(T)                                                                               \
  template void attention_forward<T>(T*, float*, const T*, const T*, const T*, int, int, int, int, int,           \
                                     cudaStream_t);                                                               \
  template void attention_backward<T>(T*, T*, T*, float*, const T*, const T*, const float*, const T*, const T*,   \
                                      const T*, int, int, int, int, int, cudaStream_t);                           \
  template void kv_cache_append<T>(T*, T*, const T*, const T*, int, int, int, int, int, int, cudaStream_t);       \
  template void attention_cached_forward<T>(T*, float*, const T*, const T*, const T*, int, int, int, int, int,    \
                                            int, int, cudaStream_t);
FW_ATTENTION_INSTANTIATE(float)
FW_ATTENTION_INSTANTIATE(bf16)
FW_ATTENTION_INSTANTIATE(f16)
#undef FW_ATTENTION_INSTANTIATE

}  // namespace cuda
}  // namespace fw
