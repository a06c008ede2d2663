// emu_simt.h: plain CUDA C++ kernels on the CPU, for kernels that use no
// inline PTX beyond what is stubbed here (gemv_emu.py: the decode GEMVs of
// gemv.cu; decode_emu.py: the split-K decode attention of decode.cu).
// Blocks run one after another: a legal schedule for kernels whose blocks
// never wait for each other (a last-block-combines ticket included). Inside a
// block every CUDA thread is a std::thread, __syncthreads is a block barrier,
// __shfl_xor_sync meets at a per-warp barrier and atomics take a lock. bf16
// and fp16 are 16-bit structs converted with round-to-nearest-even, as the
// CUDA intrinsics do. rsqrtf, __expf and exp2f are computed exactly (the
// GPU's are approximate: compare with a tolerance). L2 prefetches and
// programmatic-launch waits are no-ops. Shared memory, static (the
// transforms rewrite each declaration into emu_static_smem) or dynamic, is
// fresh for every block and NaN until written.
#pragma once
#include <algorithm>
#include <atomic>
#include <cassert>
#include <map>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "emu_common.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__

// The shim's own preconditions, checked in every build (CMake's Release
// flags define NDEBUG, which would silence assert).
#define EMU_CHECK(cond)                                                   \
  do {                                                                    \
    if (!(cond)) {                                                        \
      std::fprintf(stderr, "emu_simt: %s failed (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                       \
    }                                                                     \
  } while (0)

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3() = default;
  dim3(unsigned a, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
extern thread_local dim3 threadIdx, blockIdx;
extern dim3 gridDim, blockDim;
using cudaStream_t = void*;

// The few runtime calls host launchers make, on host memory: every pointer
// here is host memory and every stream is in order already.
using cudaError_t = int;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice,
                      cudaMemcpyDefault };
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t) {
  std::memcpy(dst, src, bytes);
  return 0;
}
template <typename P>
cudaError_t cudaMallocAsync(P** p, size_t bytes, cudaStream_t) {
  *p = static_cast<P*>(std::malloc(bytes));
  return *p ? 0 : 2;
}
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t) {
  std::free(p);
  return 0;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return 0; }
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
template <typename K>
cudaError_t cudaFuncSetAttribute(K, cudaFuncAttribute, int) {  // any size is fine here
  return 0;
}

// ---------------------------------------------------------------- 16-bit types
struct __nv_bfloat16 {
  uint16_t x;
};
struct __half {
  uint16_t x;
};
inline float __bfloat162float(__nv_bfloat16 v) { return emu_bf2f(v.x); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {emu_f2bf_rn(f)}; }
inline float __half2float(__half v) { return emu_h2f(v.x); }
inline __half __float2half_rn(float f) { return {emu_f2h_rn(f)}; }

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float exp2f(float x) { return std::exp2(x); }
struct uint4 {
  uint32_t x, y, z, w;
};
struct uint2 {
  uint32_t x, y;
};
struct char4 {
  signed char x, y, z, w;
};
using std::isfinite;
inline float __uint_as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline __half __ushort_as_half(unsigned short h) { return {h}; }
template <typename V>
V __ldcg(const V* p) {  // an L2 load: here, the one copy of memory
  return *p;
}
// Blocks run one at a time, so a fence orders nothing more than program
// order already does; the atomics still go through one lock.
inline void __threadfence() {}
inline std::mutex& emu_atomic_lock() {
  static std::mutex m;
  return m;
}
inline unsigned atomicInc(unsigned* p, unsigned limit) {  // PTX atom.inc: wraps to 0 past limit
  std::lock_guard<std::mutex> lk(emu_atomic_lock());
  const unsigned old = *p;
  *p = old >= limit ? 0u : old + 1u;
  return old;
}
inline float __expf(float x) { return std::exp(x); }
using std::fmaf;
using std::fmaxf;
using std::min;
using std::max;

// ---------------------------------------------------------------- a block's threads

struct EmuBlock {
  EmuBarrier* block = nullptr;
  std::vector<EmuBarrier*> warps;
  float shfl[32][32];
  std::atomic<int> vote{0};
  std::vector<double> dyn;  // dynamic shared memory (8-byte aligned), all-ones bytes per block
  std::mutex statics_mu;
  std::map<int, std::vector<double>> statics;  // static __shared__ arrays by declarator, per block
};
extern EmuBlock emu_block;

// All-ones bytes: a NaN as fp64, fp32, bf16 and fp16 alike, so a read of
// shared memory no thread wrote shows in the outputs.
inline void emu_fill_nan(std::vector<double>& v, size_t bytes) {
  v.assign(bytes / sizeof(double) + 1, 0.0);
  std::memset(v.data(), 0xFF, v.size() * sizeof(double));
}

// `extern __shared__ T name[];` becomes `T* name = emu_dyn_smem<T>();`.
template <typename V>
V* emu_dyn_smem() {
  return reinterpret_cast<V*>(emu_block.dyn.data());
}

// `__shared__ T name[n];` becomes `T* name = emu_static_smem<T>(site, n);`:
// the same storage for every thread of the block, fresh (NaN) for the next.
template <typename V>
V* emu_static_smem(int site, size_t n) {
  std::lock_guard<std::mutex> lk(emu_block.statics_mu);
  std::vector<double>& a = emu_block.statics[site];
  if (a.empty()) emu_fill_nan(a, n * sizeof(V));
  return reinterpret_cast<V*>(a.data());
}

inline void __syncthreads() { emu_block.block->wait(); }

// Block-wide OR of pred, every thread gets it. Thread 0 clears the vote
// after the last read; the next call's first barrier orders that clear.
inline int __syncthreads_or(int pred) {
  emu_block.block->wait();
  if (pred) emu_block.vote = 1;
  emu_block.block->wait();
  const int r = emu_block.vote;
  emu_block.block->wait();
  if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) emu_block.vote = 0;
  return r;
}

// The thread's linear index in its block: warps are 32 consecutive ones.
inline int emu_tid() { return (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)); }

// Every lane publishes v, then reads lane `src` of its warp.
template <typename V>
V emu_shfl(V v, int src) {
  static_assert(sizeof(V) == 4, "32-bit values");
  const int w = emu_tid() >> 5, l = emu_tid() & 31;
  EMU_CHECK(32 * w + (src & 31) < (int)(blockDim.x * blockDim.y * blockDim.z));  // no lane past the block
  std::memcpy(&emu_block.shfl[w][l], &v, 4);
  emu_block.warps[w]->wait();
  V r;
  std::memcpy(&r, &emu_block.shfl[w][src & 31], 4);
  emu_block.warps[w]->wait();
  return r;
}
template <typename V>
V __shfl_xor_sync(unsigned mask, V v, int lane_mask) {
  EMU_CHECK(mask == 0xffffffffu);
  return emu_shfl(v, (emu_tid() & 31) ^ lane_mask);
}
template <typename V>
V __shfl_sync(unsigned mask, V v, int src_lane) {
  EMU_CHECK(mask == 0xffffffffu);
  return emu_shfl(v, src_lane);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  EMU_CHECK(mask == 0xffffffffu);
  emu_block.warps[emu_tid() >> 5]->wait();
}

// kernel(...) over grid x block (up to 1024 threads per block), one block
// after another, with smem_bytes of dynamic shared memory (NaN until
// written, like every static __shared__ array).
// The order blocks run in: ascending, or (emu_reverse_blocks) descending, so
// code that assumes which block comes last can be caught.
inline bool& emu_reverse_blocks() {
  static bool r = false;
  return r;
}

template <typename F>
void emu_launch(dim3 grid, dim3 block, F kernel_call, size_t smem_bytes = 0) {
  const unsigned nt = block.x * block.y * block.z;
  EMU_CHECK(nt >= 1 && nt <= 1024);
  gridDim = grid;
  blockDim = block;
  const unsigned nb = grid.x * grid.y * grid.z;
  for (unsigned ib = 0; ib < nb; ib++) {
    const unsigned lb = emu_reverse_blocks() ? nb - 1 - ib : ib;
    const unsigned x = lb % grid.x, y = (lb / grid.x) % grid.y, z = lb / (grid.x * grid.y);
    EmuBarrier bb((int)nt);
    std::vector<std::unique_ptr<EmuBarrier>> wb;
    for (unsigned w = 0; w < (nt + 31) / 32; w++)  // a last, partial warp has fewer lanes
      wb.push_back(std::make_unique<EmuBarrier>((int)std::min(32u, nt - 32 * w)));
    emu_fill_nan(emu_block.dyn, smem_bytes);
    emu_block.statics.clear();
    emu_block.block = &bb;
    emu_block.warps.clear();
    for (auto& w : wb) emu_block.warps.push_back(w.get());
    std::vector<std::thread> th;
    for (unsigned t = 0; t < nt; t++)
      th.emplace_back([=] {
        threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
        blockIdx = dim3(x, y, z);
        kernel_call();
      });
    for (auto& t : th) t.join();
  }
}
