// emu_simt.h: plain CUDA C++ kernels on the CPU, for kernels that use no
// inline PTX beyond what is stubbed here (gemv_emu.py, decode_emu.py and
// ops_emu.py turn native/cuda's .cu files into C++ over this header; the
// emulated backend fw_cuda_emu runs all of them behind emu_cuda.h).
// Blocks run one after another: a legal schedule for kernels whose blocks
// never wait for each other (a last-block-combines ticket included). Inside a
// block every CUDA thread is a fiber, __syncthreads is a block barrier,
// __shfl_xor_sync meets at a per-warp barrier and atomics are plain
// read-modify-writes (no fiber yields inside one). bf16
// and fp16 are 16-bit structs converted with round-to-nearest-even, as the
// CUDA intrinsics do. rsqrtf, __expf and exp2f are computed exactly (the
// GPU's are approximate: compare with a tolerance). L2 prefetches and
// programmatic-launch waits are no-ops. Shared memory, static (the
// transforms rewrite each declaration into emu_static_smem) or dynamic, is
// fresh for every block and NaN until written.
#pragma once
#include <algorithm>
#include <atomic>
#include <map>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>

#include <sys/mman.h>
#include <ucontext.h>
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
// The running CUDA thread's coordinates: the scheduler sets them before it
// resumes a thread (all of a block's threads are fibers of one OS thread).
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 gridDim, blockDim;
// The runtime calls host launchers make (streams, copies, occupancy):
// emu_cuda.h, on host memory.
#include "emu_cuda.h"

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
// Aligned as CUDA's vector types: a 16-byte load from a misaligned address
// faults on a GPU, and may here (the compiler may use aligned loads).
struct alignas(16) uint4 {
  uint32_t x, y, z, w;
};
struct alignas(8) uint2 {
  uint32_t x, y;
};
struct float2 {
  float x, y;
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
// Blocks run one at a time and a block's threads are fibers of one OS
// thread (and every kernel runs under emu_cuda.cc's lock), so a fence
// orders nothing more than program order already does, and an atomic is
// atomic because no fiber yields inside it.
inline void __threadfence() {}
inline unsigned atomicInc(unsigned* p, unsigned limit) {  // PTX atom.inc: wraps to 0 past limit
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
//
// A block's CUDA threads are fibers of the OS thread that runs the launch:
// each runs until it meets a barrier its peers have not all reached, then
// hands the thread straight to the next one that can run, round robin; a
// thread waiting at a barrier is resumed only once the barrier opens. So
// the thousands of CUDA threads of a model's kernels cost context switches,
// not OS threads. A block in which no unfinished thread can run is a
// deadlock (a barrier some of its threads never reach): it aborts with a
// message.

// The switch between fibers. On x86-64 a few instructions that save the
// callee-saved registers and swap stacks (ucontext's swapcontext makes a
// system call per switch, which dominated the emulator's time); elsewhere,
// and under AddressSanitizer (which must be told of stack switches),
// ucontext.
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define EMU_FAST_SWITCH 1
extern "C" void emu_ctx_switch(void** save_sp, void* load_sp);
// Weak: every translation unit that includes this header emits it, the
// linker keeps one.
asm(R"(
  .pushsection .text
  .weak emu_ctx_switch
  .type emu_ctx_switch, @function
emu_ctx_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_ctx_switch, .-emu_ctx_switch
  .popsection
)");
#else
#define EMU_FAST_SWITCH 0
#endif

// Barrier of n fibers (a block's threads, or a warp's lanes).
class EmuFiberBarrier {
 public:
  explicit EmuFiberBarrier(int n) : n_(n) {}
  void wait();
  unsigned long generation() const { return gen_; }

 private:
  int n_, count_ = 0;
  unsigned long gen_ = 0;
};

struct EmuBlock {
  EmuFiberBarrier* block = nullptr;
  std::vector<EmuFiberBarrier*> warps;
  float shfl[2][32][32];  // [parity of the lane's shuffle count][warp][lane]
  std::atomic<int> vote{0};
  std::vector<double> dyn;  // dynamic shared memory (8-byte aligned), all-ones bytes per block
  size_t dyn_bytes = 0;     // as the launch asked
  long pdl_waits = 0;       // griddepcontrol.wait calls in the block (programmatic launches)
  unsigned long serial = 0;  // blocks run so far (state kept per block starts over when it changes)
  std::map<int, std::vector<double>> statics;  // static __shared__ arrays by declarator, per block
};
inline EmuBlock emu_block;

// The fibers of the block that runs on this OS thread.
struct EmuFibers {
  static constexpr size_t kStack = 128 * 1024;
#if EMU_FAST_SWITCH
  void* sched_sp = nullptr;
  std::vector<void*> sp;  // each fiber's saved stack pointer
#else
  ucontext_t sched;
  std::vector<ucontext_t> ctx;
#endif
  std::vector<char> done;
  // The barrier each fiber waits at, and its generation then: the scheduler
  // resumes the fiber only once that generation has passed.
  std::vector<const EmuFiberBarrier*> wait_on;
  std::vector<unsigned long> wait_gen;
  std::vector<unsigned> shuffles;  // each fiber's shuffles so far in this block
  std::vector<dim3> coords;        // each fiber's threadIdx
  unsigned live = 0;               // fibers of the block not finished
  char* stacks = nullptr;
  size_t n_stacks = 0;
  int cur = -1;
  const std::function<void()>* body = nullptr;
  ~EmuFibers() {
    if (stacks) munmap(stacks, n_stacks * kStack);
  }
  // n stacks, each with a guard page at its low end (stacks grow down), so
  // an overflow faults instead of writing over the next fiber's frames.
  void reserve(size_t n) {
    if (n <= n_stacks) return;
    if (stacks) munmap(stacks, n_stacks * kStack);
    void* m = mmap(nullptr, n * kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    EMU_CHECK(m != MAP_FAILED);
    stacks = static_cast<char*>(m);
    for (size_t i = 0; i < n; i++) EMU_CHECK(mprotect(stacks + i * kStack, 4096, PROT_NONE) == 0);
    n_stacks = n;
  }
};
inline thread_local EmuFibers emu_fibers;

// Called by a fiber that cannot go on yet: the scheduler runs the others.
// Switches from fiber `from` to fiber `to` (-1: the scheduler).
inline void emu_switch(int from, int to) {
  EmuFibers& f = emu_fibers;
#if EMU_FAST_SWITCH
  emu_ctx_switch(from < 0 ? &f.sched_sp : &f.sp[from], to < 0 ? f.sched_sp : f.sp[to]);
#else
  swapcontext(from < 0 ? &f.sched : &f.ctx[from], to < 0 ? &f.sched : &f.ctx[to]);
#endif
}

// The next fiber after `after` (round robin) that can run: not finished,
// and not waiting at a barrier that has not opened. -1 when none can.
inline int emu_next_runnable(int after) {
  EmuFibers& f = emu_fibers;
  const int n = (int)f.done.size();
  for (int i = 1; i <= n; i++) {
    const int t = (after + i) % n;
    if (!f.done[t] && (!f.wait_on[t] || f.wait_on[t]->generation() != f.wait_gen[t])) return t;
  }
  return -1;
}

// Hands the OS thread from the running fiber to the next runnable one, or
// to the scheduler when none can run (every thread finished, or a deadlock).
inline void emu_pass_on() {
  EmuFibers& f = emu_fibers;
  const int me = f.cur;
  const int next = emu_next_runnable(me);
  if (next >= 0) {
    f.cur = next;
    f.wait_on[next] = nullptr;
    threadIdx = f.coords[next];
  }
  emu_switch(me, next);
}

// Called by a fiber that cannot go on yet.
inline void emu_yield() {
  EMU_CHECK(emu_fibers.cur >= 0);  // a barrier outside a kernel
  emu_pass_on();
}

inline void EmuFiberBarrier::wait() {
  const unsigned long gen = gen_;
  if (++count_ == n_) {
    count_ = 0;
    gen_++;
    return;
  }
  EmuFibers& f = emu_fibers;
  f.wait_on[f.cur] = this;
  f.wait_gen[f.cur] = gen;
  emu_yield();
  EMU_CHECK(gen_ != gen);
}

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
  std::vector<double>& a = emu_block.statics[site];
  if (a.empty()) emu_fill_nan(a, n * sizeof(V));
  EMU_CHECK(a.size() * sizeof(double) >= n * sizeof(V));  // one declaration, one size
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

// Every lane publishes v, then reads lane `src` of its warp. The slots
// alternate between two sets: a lane that writes shuffle k + 2 has passed
// shuffle k + 1's barrier, so every lane has read shuffle k by then, and one
// barrier per shuffle suffices.
template <typename V>
V emu_shfl(V v, int src) {
  static_assert(sizeof(V) == 4, "32-bit values");
  const int w = emu_tid() >> 5, l = emu_tid() & 31;
  EMU_CHECK(32 * w + (src & 31) < (int)(blockDim.x * blockDim.y * blockDim.z));  // no lane past the block
  const unsigned k = emu_fibers.shuffles[emu_fibers.cur]++ & 1u;
  std::memcpy(&emu_block.shfl[k][w][l], &v, 4);
  emu_block.warps[w]->wait();
  V r;
  std::memcpy(&r, &emu_block.shfl[k][w][src & 31], 4);
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

// The order blocks run in: ascending, or (emu_reverse_blocks) descending, so
// code that assumes which block comes last can be caught.
// FW_EMU_BLOCK_ORDER=reverse sets it for a whole run.
inline bool& emu_reverse_blocks() {
  static bool r = [] {
    const char* e = std::getenv("FW_EMU_BLOCK_ORDER");
    return e && std::strcmp(e, "reverse") == 0;
  }();
  return r;
}

// griddepcontrol.wait (launch.cuh's pdl_wait_then_trigger): counted, so a
// kernel launched programmatically that never waits for the kernel before
// it (which a GPU may still be running) is caught.
inline void emu_pdl_wait() { emu_block.pdl_waits++; }

inline void emu_fiber_entry() {
  EmuFibers& f = emu_fibers;
  (*f.body)();
  f.done[f.cur] = 1;
  f.live--;
  emu_pass_on();  // never resumed
  std::abort();
}

// Fiber t, ready to start emu_fiber_entry on its own stack.
inline void emu_fiber_init(EmuFibers& f, unsigned t) {
  char* top = f.stacks + (size_t)(t + 1) * EmuFibers::kStack;
#if EMU_FAST_SWITCH
  // What emu_ctx_switch pops, from the new stack pointer up: the MXCSR and
  // x87 control words, r15..r12, rbx, rbp, then the address it returns to;
  // above that a dummy return address, so the entry sees the ABI's alignment.
  uint64_t* s = reinterpret_cast<uint64_t*>(top) - 9;
  uint32_t csr[2];
  asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(csr[0]), "=m"(csr[1]));
  std::memcpy(&s[0], csr, 8);
  for (int i = 1; i <= 6; i++) s[i] = 0;
  s[7] = reinterpret_cast<uint64_t>(&emu_fiber_entry);
  s[8] = 0;
  f.sp[t] = s;
#else
  getcontext(&f.ctx[t]);
  f.ctx[t].uc_stack.ss_sp = top - EmuFibers::kStack;
  f.ctx[t].uc_stack.ss_size = EmuFibers::kStack;
  f.ctx[t].uc_link = &f.sched;
  makecontext(&f.ctx[t], emu_fiber_entry, 0);
#endif
}

// Runs kernel_call over grid x block (up to 1024 threads per block), one
// block after another, with smem_bytes of dynamic shared memory (NaN until
// written, like every static __shared__ array), on the calling OS thread.
inline void emu_run_kernel(dim3 grid, dim3 block, const std::function<void()>& kernel_call, size_t smem_bytes,
                           bool pdl = false, const char* name = "a kernel") {
  const unsigned nt = block.x * block.y * block.z;
  EMU_CHECK(nt >= 1 && nt <= 1024);
  EmuFibers& f = emu_fibers;
  EMU_CHECK(f.cur < 0);  // no launch from inside a kernel
  f.reserve(nt);
#if EMU_FAST_SWITCH
  f.sp.resize(nt);
#else
  f.ctx.resize(nt);
#endif
  f.done.assign(nt, 0);
  f.wait_on.assign(nt, nullptr);
  f.wait_gen.assign(nt, 0);
  f.coords.resize(nt);
  for (unsigned t = 0; t < nt; t++) f.coords[t] = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
  f.body = &kernel_call;
  gridDim = grid;
  blockDim = block;
  const unsigned nb = grid.x * grid.y * grid.z;
  for (unsigned ib = 0; ib < nb; ib++) {
    const unsigned lb = emu_reverse_blocks() ? nb - 1 - ib : ib;
    blockIdx = dim3(lb % grid.x, (lb / grid.x) % grid.y, lb / (grid.x * grid.y));
    EmuFiberBarrier bb((int)nt);
    std::vector<std::unique_ptr<EmuFiberBarrier>> wb;
    for (unsigned w = 0; w < (nt + 31) / 32; w++)  // a last, partial warp has fewer lanes
      wb.push_back(std::make_unique<EmuFiberBarrier>((int)std::min(32u, nt - 32 * w)));
    emu_fill_nan(emu_block.dyn, smem_bytes);
    emu_block.dyn_bytes = smem_bytes;
    emu_block.serial++;
    emu_block.pdl_waits = 0;
    emu_block.statics.clear();
    emu_block.vote = 0;
    emu_block.block = &bb;
    emu_block.warps.clear();
    for (auto& w : wb) emu_block.warps.push_back(w.get());
    std::fill(f.done.begin(), f.done.end(), 0);
    std::fill(f.wait_on.begin(), f.wait_on.end(), nullptr);
    f.shuffles.assign(nt, 0);
    for (unsigned t = 0; t < nt; t++) emu_fiber_init(f, t);
    // Fiber 0 starts; from then on the fibers pass the thread among
    // themselves, and it comes back here when none can run.
    f.live = nt;
    f.cur = 0;
    threadIdx = f.coords[0];
    emu_switch(-1, 0);
    f.cur = -1;
    if (f.live > 0) {
      std::fprintf(stderr,
                   "emu_simt: block (%u,%u,%u) deadlocked: %u of its %u threads wait at a barrier the others "
                   "never reach\n",
                   blockIdx.x, blockIdx.y, blockIdx.z, f.live, nt);
      std::abort();
    }
    if (pdl && emu_block.pdl_waits == 0) {
      std::fprintf(stderr,
                   "emu_simt: %s was launched programmatically (launch_pdl) but block (%u,%u,%u) never waits "
                   "for the kernel before it (pdl_wait_then_trigger)\n",
                   name, blockIdx.x, blockIdx.y, blockIdx.z);
      std::abort();
    }
  }
  f.body = nullptr;
}

// kernel<<<grid, block, smem_bytes, stream>>>: checked now (emu_cuda.h's
// emu_check_launch), the blocks run when the stream gets to them, with the
// arguments copied now. kernel: the kernel's address (for its attributes);
// pdl: a programmatic launch, whose every block must wait for the kernel
// before it.
template <typename F>
void emu_launch(dim3 grid, dim3 block, F kernel_call, size_t smem_bytes = 0, cudaStream_t stream = 0,
                const void* kernel = nullptr, const char* name = "a kernel", bool pdl = false) {
  emu_check_launch(kernel, name, grid, block, smem_bytes);
  emu_submit(stream,
             [=] { emu_run_kernel(grid, block, std::function<void()>(kernel_call), smem_bytes, pdl, name); });
}
