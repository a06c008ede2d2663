// cublas_v2.h for the emulated CUDA backend: emu_cuda.h declares the GEMMs it
// runs on the CPU.
#pragma once
#include "emu_simt.h"
