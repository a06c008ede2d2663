// cuda_check.h: FW_CUDA_CHECK for host code (.cpp and .cu alike): a failed
// CUDA runtime call throws fw::Error(kInternal) naming the call, file, line
// and CUDA's message, since library code never exits (engine/common.h).
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "common.h"

// FW_CUDA_CHECK(call): throw fw::Error(kInternal) naming the call, file and line.
#define FW_CUDA_CHECK(call)                                                                           \
  do {                                                                                                \
    cudaError_t fw_cuda_err_ = (call);                                                                \
    if (fw_cuda_err_ != cudaSuccess) {                                                                \
      ::fw::throw_error(::fw::ErrorKind::kInternal, __FILE__, __LINE__,                               \
                        std::string(#call) + " failed: " + cudaGetErrorString(fw_cuda_err_),          \
                        "run under compute-sanitizer, or with CUDA_LAUNCH_BLOCKING=1 to find the kernel"); \
    }                                                                                                 \
  } while (0)

// After a kernel launch: reports a bad launch configuration at once (an error
// inside the kernel surfaces at the next synchronising call).
#define FW_CUDA_CHECK_LAUNCH() FW_CUDA_CHECK(cudaGetLastError())
