// cuda_runtime.h for the emulated CUDA backend (emu_cuda.h): the runtime, the 16-bit
// types and the kernel language on the CPU.
#pragma once
#include "emu_simt.h"
