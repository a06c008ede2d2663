// launch.cuh: programmatic dependent launch (launch.h) for kernels: the
// device-side wait / trigger and the host launcher.
#pragma once

#include <cuda_runtime.h>

#include "cuda_check.h"
#include "launch.h"

namespace fw {
namespace cuda {

// First statement of a kernel launched with launch_pdl: blocks until the
// previous kernel on the stream has completed and its writes are visible,
// then lets the next kernel's launch begin (so at most one kernel runs
// ahead, waiting). A no-op when the kernel was launched the ordinary way
// and on devices before sm_90.
__device__ __forceinline__ void pdl_wait_then_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
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
