// gemv.cu: small-batch matrix-vector products for decode (gemv.cuh).
//
// Grid: one warp per output channel across all projections of a launch (a
// block of kWarps warps covers kWarps consecutive channels). Each lane reads
// 16-byte packs of the weight row (Pack, cuda_common.cuh) and the matching
// packs of every input row (small, served from L1/L2), accumulating in fp32;
// a warp sum finishes each dot product and lane 0 writes the results. The
// number of rows R is a template parameter (1..8) so the accumulators stay in
// registers. Before its PDL wait each warp asks L2 for its weight row
// (warp_prefetch_l2, launch.cuh): the weights are read-only during decode, so
// a launch's weights stream in while the kernel before it still runs.
#include <algorithm>

#include "cuda_common.cuh"
#include "launch.cuh"
#include "gemv.cuh"

namespace fw {
namespace cuda {

namespace {

constexpr int kWarps = 8;
constexpr int kMaxOuts = 3;

template <typename T>
struct GemvArgs {
  GemvOut<T> outs[kMaxOuts];
  int n_outs;
  int first[kMaxOuts + 1];  // channel offsets of the projections in the grid
  int channels;             // first[n_outs]
};

// With kNorm the input rows are RMS-normalised on the fly: element c of row
// r becomes round_T(x[c] * rstd[r] * nw[c]), exactly what rmsnorm_forward
// stores, so the product is bit for bit the unfused one.
template <typename T, int R, bool kNorm>
__device__ __forceinline__ void dot_rows(float (&acc)[R], const T* wrow, const T* x, int IC, const T* nw,
                                         const float (&rstd)[R]) {
  const int lane = threadIdx.x & 31;
  const Pack<T>* wp = reinterpret_cast<const Pack<T>*>(wrow);
  for (int j = lane; j < IC / kPack<T>; j += 32) {
    const Pack<T> w = wp[j];
    Pack<T> g;
    if constexpr (kNorm) g = reinterpret_cast<const Pack<T>*>(nw)[j];
#pragma unroll
    for (int r = 0; r < R; r++) {
      const Pack<T> xv = reinterpret_cast<const Pack<T>*>(x + (size_t)r * IC)[j];
#pragma unroll
      for (int k = 0; k < kPack<T>; k++) {
        float xe = to_f32(xv.v[k]);
        if constexpr (kNorm) xe = to_f32(from_f32<T>(xe * rstd[r] * to_f32(g.v[k])));
        acc[r] = fmaf(to_f32(w.v[k]), xe, acc[r]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; r++) acc[r] = warp_sum(acc[r]);
}

// kNorm: the first R warps of the block compute the rows' 1/rms with
// warp_row_rstd, as rmsnorm_forward_kernel does, into rstd;
// every thread of the block reaches the barrier. A no-op otherwise.
template <typename T, int R, bool kNorm>
__device__ __forceinline__ void block_rstd(float (&rstd)[R], const T* x, int IC, float eps) {
  if constexpr (kNorm) {
    __shared__ float s_rstd[kGemvMaxRows];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (warp < R) {
      const float r = warp_row_rstd(x + (size_t)warp * IC, IC, eps);  // rmsnorm_forward's statistic
      if (lane == 0) s_rstd[warp] = r;
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < R; r++) rstd[r] = s_rstd[r];
  } else {
#pragma unroll
    for (int r = 0; r < R; r++) rstd[r] = 1.0f;
  }
}

// Channel ch's weight row within the launch's projections (for the
// prefetches), picked field by field with constant indices so the arguments
// stay in parameter space (no local-memory copy); the loop below picks the
// channel's bias, output and width the same way.
template <typename T>
__device__ __forceinline__ const T* gemv_row(const GemvArgs<T>& a, int ch, int IC) {
  const int sel = (a.n_outs > 2 && ch >= a.first[2]) ? 2 : (a.n_outs > 1 && ch >= a.first[1]) ? 1 : 0;
  const T* w = sel == 2 ? a.outs[2].w : sel == 1 ? a.outs[1].w : a.outs[0].w;
  const int o = ch - (sel == 2 ? a.first[2] : sel == 1 ? a.first[1] : 0);
  return w + (size_t)o * IC;
}

// Grid-stride over the channels: a launch of more channels than its grid
// holds (the lm_head) has each block compute its rows' 1/rms once and then
// loop, asking L2 for the next row while it computes the current one.
template <typename T, int R, bool kNorm>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(GemvArgs<T> a, const T* x, int IC, bool accumulate, const T* nw, float eps) {
  const int stride = gridDim.x * kWarps;
  const size_t row_bytes = (size_t)IC * sizeof(T);
  int ch = blockIdx.x * kWarps + (threadIdx.x >> 5);
  // the first weight row streams into L2 while the previous kernel finishes
  if (ch < a.channels) warp_prefetch_l2(gemv_row(a, ch, IC), row_bytes);
  pdl_wait_then_trigger();
  float rstd[R];
  block_rstd<T, R, kNorm>(rstd, x, IC, eps);
  for (; ch < a.channels; ch += stride) {
    if (ch + stride < a.channels) warp_prefetch_l2(gemv_row(a, ch + stride, IC), row_bytes);
    const int sel = (a.n_outs > 2 && ch >= a.first[2]) ? 2 : (a.n_outs > 1 && ch >= a.first[1]) ? 1 : 0;
    const int o = ch - (sel == 2 ? a.first[2] : sel == 1 ? a.first[1] : 0);
    const T* w = sel == 2 ? a.outs[2].w : sel == 1 ? a.outs[1].w : a.outs[0].w;
    const T* bias = sel == 2 ? a.outs[2].bias : sel == 1 ? a.outs[1].bias : a.outs[0].bias;
    T* out = sel == 2 ? a.outs[2].out : sel == 1 ? a.outs[1].out : a.outs[0].out;
    const int oc = sel == 2 ? a.outs[2].oc : sel == 1 ? a.outs[1].oc : a.outs[0].oc;
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.0f;
    dot_rows<T, R, kNorm>(acc, w + (size_t)o * IC, x, IC, nw, rstd);
    if ((threadIdx.x & 31) == 0) {
      const float b = bias ? to_f32(bias[o]) : 0.0f;
#pragma unroll
      for (int r = 0; r < R; r++) {
        T* y = out + (size_t)r * oc + o;
        *y = from_f32<T>((accumulate ? to_f32(*y) : 0.0f) + acc[r] + b);
      }
    }
  }
}

template <typename T, int R, bool kNorm>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_swiglu_kernel(T* h, const T* x, const T* wg, const T* wu, int IC, int I, const T* nw, float eps) {
  const int o = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (o < I) {  // both weight rows stream into L2 while the previous kernel finishes
    warp_prefetch_l2(wg + (size_t)o * IC, (size_t)IC * sizeof(T));
    warp_prefetch_l2(wu + (size_t)o * IC, (size_t)IC * sizeof(T));
  }
  pdl_wait_then_trigger();
  float rstd[R];
  block_rstd<T, R, kNorm>(rstd, x, IC, eps);
  if (o >= I) return;
  float g[R], u[R];
#pragma unroll
  for (int r = 0; r < R; r++) g[r] = u[r] = 0.0f;
  dot_rows<T, R, kNorm>(g, wg + (size_t)o * IC, x, IC, nw, rstd);
  dot_rows<T, R, kNorm>(u, wu + (size_t)o * IC, x, IC, nw, rstd);
  if ((threadIdx.x & 31) == 0) {
#pragma unroll
    for (int r = 0; r < R; r++) {
      // the gate and up values are rounded to T first, as the unfused path
      // stores them, so both paths compute the same SwiGLU inputs
      const float gr = to_f32(from_f32<T>(g[r])), ur = to_f32(from_f32<T>(u[r]));
      const float sg = 1.0f / (1.0f + __expf(-gr));
      h[(size_t)r * I + o] = from_f32<T>(gr * sg * ur);
    }
  }
}

// gemv_rmsnorm_qkv_rope: warp w of the grid owns, in order, a rotated pair
// (head, i) of q (NH * HS/2 of them), then of k (KVH * HS/2), then a channel
// of v (KVH * HS). A pair's warp computes the channels head*HS + i and
// head*HS + i + HS/2 with dot_rows, rounds them to T as gemv stores them,
// rotates them with rope_rotate as rope_append_dpos does, and writes q (or
// k and the key cache); a v warp writes v and the value cache.
template <typename T, int R>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_qkv_rope_kernel(QkvRope<T> a, const T* x, int IC, const T* nw, float eps) {
  const int half = a.HS / 2, QD = a.NH * a.HS, KD = a.KVH * a.HS;
  const int qpairs = a.NH * half, kpairs = a.KVH * half;
  const int wi = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const int kind = wi < qpairs ? 0 : wi < qpairs + kpairs ? 1 : wi < qpairs + kpairs + KD ? 2 : 3;  // q, k, v, none
  const int p = kind == 0 ? wi : wi - qpairs;  // pair index within q or k
  const int head = p / half, i = p % half;
  const T* w = kind == 0 ? a.wq : kind == 1 ? a.wk : a.wv;
  const T* bias = kind == 0 ? a.bq : kind == 1 ? a.bk : a.bv;
  const int o1 = kind == 2 ? wi - qpairs - kpairs : head * a.HS + i;  // weight rows (output channels)
  const int o2 = o1 + half;
  if (kind < 2) {  // both rows stream into L2 while the previous kernel finishes
    warp_prefetch_l2(w + (size_t)o1 * IC, (size_t)IC * sizeof(T));
    warp_prefetch_l2(w + (size_t)o2 * IC, (size_t)IC * sizeof(T));
  } else if (kind == 2) {
    warp_prefetch_l2(w + (size_t)o1 * IC, (size_t)IC * sizeof(T));
  }
  pdl_wait_then_trigger();
  float rstd[R];
  block_rstd<T, R, true>(rstd, x, IC, eps);
  if (kind == 3) return;
  float acc1[R], acc2[R];
#pragma unroll
  for (int r = 0; r < R; r++) acc1[r] = acc2[r] = 0.0f;
  dot_rows<T, R, true>(acc1, w + (size_t)o1 * IC, x, IC, nw, rstd);
  if (kind < 2) dot_rows<T, R, true>(acc2, w + (size_t)o2 * IC, x, IC, nw, rstd);
  if ((threadIdx.x & 31) != 0) return;
  const int pos0 = *a.d_pos;
  const float b1 = bias ? to_f32(bias[o1]) : 0.0f;
  const float b2 = bias && kind < 2 ? to_f32(bias[o2]) : 0.0f;
#pragma unroll
  for (int r = 0; r < R; r++) {
    const int t = r % a.Tq, b = r / a.Tq, pos = pos0 + t;
    const bool in_cache = pos >= 0 && pos < a.S;
    // as gemv stores its outputs (no accumulation)
    const T y1 = from_f32<T>(0.0f + acc1[r] + b1);
    if (kind == 2) {
      a.v[(size_t)r * KD + o1] = y1;
      if (in_cache) a.v_cache[(((size_t)b * a.KVH + o1 / a.HS) * a.S + pos) * a.HS + o1 % a.HS] = y1;
      continue;
    }
    const T y2 = from_f32<T>(0.0f + acc2[r] + b2);
    const size_t tab = (size_t)pos * half + i;
    T r1, r2;
    rope_rotate<T>(to_f32(y1), to_f32(y2), a.cos_t[tab], a.sin_t[tab], r1, r2);
    T* dst = kind == 0 ? a.q + (size_t)r * QD : a.k + (size_t)r * KD;
    dst[o1] = r1;
    dst[o2] = r2;
    if (kind == 1 && in_cache) {
      T* kc = a.k_cache + (((size_t)b * a.KVH + head) * a.S + pos) * a.HS;
      kc[i] = r1;
      kc[i + half] = r2;
    }
  }
}

// Runs CALL with the compile-time constant R = N (1..kGemvMaxRows).
#define FW_GEMV_WITH_ROWS(N, CALL)                                                                       \
  switch (N) {                                                                                           \
    case 1: { constexpr int R = 1; CALL; } break;                                                        \
    case 2: { constexpr int R = 2; CALL; } break;                                                        \
    case 3: { constexpr int R = 3; CALL; } break;                                                        \
    case 4: { constexpr int R = 4; CALL; } break;                                                        \
    case 5: { constexpr int R = 5; CALL; } break;                                                        \
    case 6: { constexpr int R = 6; CALL; } break;                                                        \
    case 7: { constexpr int R = 7; CALL; } break;                                                        \
    case 8: { constexpr int R = 8; CALL; } break;                                                        \
    default: FW_CHECK(false, kInvalidArgument, "gemv: " << (N) << " rows, at most " << kGemvMaxRows);     \
  }

// Blocks of `threads` threads of kKernel the current device holds at once
// (SMs x blocks per SM at its occupancy), asked once per kernel and thread.
template <auto kKernel>
long long resident_blocks(int threads) {
  static thread_local int cached_device = -1;
  static thread_local long long cached = 0;
  int dev = 0;
  FW_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev != cached_device) {
    int sms = 0, per_sm = 0;
    FW_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    FW_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kKernel, threads, 0));
    cached = (long long)sms * std::max(per_sm, 1);
    cached_device = dev;
  }
  return cached;
}

}  // namespace

template <typename T>
bool gemv_fits(int N, int IC) {
  return N >= 1 && N <= kGemvMaxRows && IC > 0 && IC % kPack<T> == 0;
}

// nw != nullptr: x RMS-normalised first (the *_rmsnorm entry points).
template <typename T>
static void gemv_launch(const T* x, const T* nw, float eps, int N, int IC, const GemvOut<T>* outs, int n_outs,
                        bool accumulate, cudaStream_t stream) {
  FW_CHECK(gemv_fits<T>(N, IC) && aligned16(x) && aligned16(nw), kInvalidArgument,
           "gemv: " << N << " rows of " << IC << " do not fit (at most " << kGemvMaxRows
                    << " rows, 16-byte aligned rows)");
  FW_CHECK(n_outs >= 1 && n_outs <= kMaxOuts, kInvalidArgument, "gemv: 1 to " << kMaxOuts << " projections");
  GemvArgs<T> a{};
  a.n_outs = n_outs;
  a.first[0] = 0;
  for (int i = 0; i < n_outs; i++) {
    FW_CHECK(aligned16(outs[i].w) && outs[i].oc >= 0, kInvalidArgument, "gemv: weights must be 16-byte aligned");
    a.outs[i] = outs[i];
    a.first[i + 1] = a.first[i] + outs[i].oc;
  }
  const int channels = a.channels = a.first[n_outs];
  if (channels == 0) return;
  const dim3 block(kWarps * 32);
  // at most one wave of blocks: more channels (the lm_head) loop in the kernel
  const long long blocks = ceil_div(channels, kWarps);
  if (nw) {
    FW_GEMV_WITH_ROWS(N, launch_pdl(gemv_kernel<T, R, true>,
                                    dim3((unsigned)std::min(blocks, resident_blocks<gemv_kernel<T, R, true>>(kWarps * 32))),
                                    block, stream, a, x, IC, accumulate, nw, eps));
  } else {
    FW_GEMV_WITH_ROWS(N, launch_pdl(gemv_kernel<T, R, false>,
                                    dim3((unsigned)std::min(blocks, resident_blocks<gemv_kernel<T, R, false>>(kWarps * 32))),
                                    block, stream, a, x, IC, accumulate, nw, eps));
  }
}

template <typename T>
static void gemv_swiglu_launch(T* h, const T* x, const T* nw, float eps, const T* wg, const T* wu, int N, int IC,
                               int I, cudaStream_t stream) {
  FW_CHECK(gemv_fits<T>(N, IC) && aligned16(x) && aligned16(wg) && aligned16(wu) && aligned16(nw), kInvalidArgument,
           "gemv_swiglu: " << N << " rows of " << IC << " do not fit");
  if (I == 0) return;
  const dim3 grid(ceil_div(I, kWarps)), block(kWarps * 32);
  if (nw) {
    FW_GEMV_WITH_ROWS(N, launch_pdl(gemv_swiglu_kernel<T, R, true>, grid, block, stream, h, x, wg, wu, IC, I, nw, eps));
  } else {
    FW_GEMV_WITH_ROWS(N, launch_pdl(gemv_swiglu_kernel<T, R, false>, grid, block, stream, h, x, wg, wu, IC, I, nw, eps));
  }
}

template <typename T>
void gemv(const T* x, int N, int IC, const GemvOut<T>* outs, int n_outs, bool accumulate, cudaStream_t stream) {
  gemv_launch<T>(x, nullptr, 0.0f, N, IC, outs, n_outs, accumulate, stream);
}

template <typename T>
void gemv_rmsnorm(const T* x, const T* norm_weight, float eps, int N, int IC, const GemvOut<T>* outs, int n_outs,
                  cudaStream_t stream) {
  FW_CHECK(norm_weight, kInvalidArgument, "gemv_rmsnorm: no norm weight");
  gemv_launch<T>(x, norm_weight, eps, N, IC, outs, n_outs, false, stream);
}

template <typename T>
void gemv_swiglu(T* h, const T* x, const T* wg, const T* wu, int N, int IC, int I, cudaStream_t stream) {
  gemv_swiglu_launch<T>(h, x, nullptr, 0.0f, wg, wu, N, IC, I, stream);
}

template <typename T>
void gemv_swiglu_rmsnorm(T* h, const T* x, const T* norm_weight, float eps, const T* wg, const T* wu, int N, int IC,
                         int I, cudaStream_t stream) {
  FW_CHECK(norm_weight, kInvalidArgument, "gemv_swiglu_rmsnorm: no norm weight");
  gemv_swiglu_launch<T>(h, x, norm_weight, eps, wg, wu, N, IC, I, stream);
}

template <typename T>
void gemv_rmsnorm_qkv_rope(const T* x, const T* norm_weight, float eps, int N, int IC, const QkvRope<T>& a,
                           cudaStream_t stream) {
  FW_CHECK(norm_weight, kInvalidArgument, "gemv_rmsnorm_qkv_rope: no norm weight");
  FW_CHECK(gemv_fits<T>(N, IC) && aligned16(x) && aligned16(norm_weight) && aligned16(a.wq) && aligned16(a.wk) &&
               aligned16(a.wv),
           kInvalidArgument, "gemv_rmsnorm_qkv_rope: " << N << " rows of " << IC << " do not fit");
  FW_CHECK(a.HS > 0 && a.HS % 2 == 0 && a.NH > 0 && a.KVH > 0 && a.Tq > 0 && N % a.Tq == 0 && a.S > 0,
           kInvalidArgument,
           "gemv_rmsnorm_qkv_rope: bad shape NH " << a.NH << " KVH " << a.KVH << " HS " << a.HS << " Tq " << a.Tq
                                                 << " N " << N << " S " << a.S);
  FW_CHECK(a.q && a.k && a.v && a.k_cache && a.v_cache && a.cos_t && a.sin_t && a.d_pos, kInvalidArgument,
           "gemv_rmsnorm_qkv_rope: null buffer");
  const long long warps = (long long)(a.NH + a.KVH) * (a.HS / 2) + (long long)a.KVH * a.HS;
  const dim3 grid(ceil_div((size_t)warps, kWarps)), block(kWarps * 32);
  FW_GEMV_WITH_ROWS(N, launch_pdl(gemv_qkv_rope_kernel<T, R>, grid, block, stream, a, x, IC, norm_weight, eps));
}

#define FW_GEMV_INSTANTIATE(T)                                                                                  \
  template bool gemv_fits<T>(int, int);                                                                         \
  template void gemv<T>(const T*, int, int, const GemvOut<T>*, int, bool, cudaStream_t);                        \
  template void gemv_rmsnorm<T>(const T*, const T*, float, int, int, const GemvOut<T>*, int, cudaStream_t);      \
  template void gemv_swiglu<T>(T*, const T*, const T*, const T*, int, int, int, cudaStream_t);                  \
  template void gemv_swiglu_rmsnorm<T>(T*, const T*, const T*, float, const T*, const T*, int, int, int, cudaStream_t); \
  template void gemv_rmsnorm_qkv_rope<T>(const T*, const T*, float, int, int, const QkvRope<T>&, cudaStream_t);
FW_GEMV_INSTANTIATE(float)
FW_GEMV_INSTANTIATE(bf16)
FW_GEMV_INSTANTIATE(f16)
#undef FW_GEMV_INSTANTIATE

}  // namespace cuda
}  // namespace fw
