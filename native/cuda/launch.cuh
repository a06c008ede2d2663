// launch.cuh: programmatic dependent launch (launch.h) for kernels: the
// device-side wait / trigger and the host launcher.
#pragma once

#include <cuda_runtime.h>

#include "cuda_check.h"
#include "launch.h"

namespace fw {
namespace cuda {

// Called by a kernel launched with launch_pdl before it touches memory that
// an earlier kernel writes (only L2 prefetches of read-only data may come
// first, warp_prefetch_l2): blocks until the previous kernel on the stream
// has completed and its writes are visible, then lets the next kernel's
// launch begin (so at most one kernel runs
// ahead, waiting). A no-op when the kernel was launched the ordinary way
// and on devices before sm_90.
__device__ __forceinline__ void pdl_wait_then_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Asks L2 to fetch the 128-byte lines covering [p, p + bytes), one line per
// lane of the calling warp at a time, without waiting. For data no kernel
// before this one writes (weights during decode), issued before
// pdl_wait_then_trigger: the lines stream from memory while the previous
// kernel still runs, and the loads after the wait find them in L2. L2 is
// where global memory is coherent, so a prefetch never makes a later load
// see stale data; the results are the same bits with or without it.
__device__ __forceinline__ void warp_prefetch_l2(const void* p, size_t bytes) {
  if (bytes == 0) return;
  const size_t first = reinterpret_cast<size_t>(p) & ~(size_t)127;
  const size_t end = reinterpret_cast<size_t>(p) + bytes;
  for (size_t a = first + (size_t)(threadIdx.x & 31) * 128; a < end; a += 32 * 128)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(__cvta_generic_to_global(reinterpret_cast<const void*>(a))));
}

// kernel<<<grid, block, 0, stream>>>(args...), with the programmatic
// stream-serialisation attribute when programmatic_launch() is on. The
// kernel must begin with pdl_wait_then_trigger().
template <typename... KArgs, typename... Args>
void launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = programmatic_launch() ? 1 : 0;
  FW_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...));
}

}  // namespace cuda
}  // namespace fw
