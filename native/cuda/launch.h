// launch.h: programmatic dependent launch (PDL), the host-side switch.
//
// On Hopper and later (compute capability >= 9.0) a kernel may be launched
// before the previous kernel on its stream has finished: its blocks start,
// wait at pdl_wait_then_trigger() (launch.cuh) until that kernel has completed and its
// writes are visible, then run. What overlaps is the launch itself (grid
// setup, block scheduling), which dominates decode at small batch, where a
// token is ~100 kernels of a few microseconds each; CUDA graphs keep the
// dependency as a programmatic edge. The decode-path kernels (embedding,
// RMSNorm, the GEMVs, RoPE + cache append, split-K attention, argmax, the
// position counter) are launched this way; every one of them waits before
// it touches memory an earlier kernel writes, so results are the same bit for
// bit either way. The GEMVs ask L2 for their weight rows before waiting
// (warp_prefetch_l2): weights are read-only during decode, and the wait is
// then spent streaming them in.
#pragma once

namespace fw {
namespace cuda {

// On by default where the device supports it and the kernels were built
// with sm_90 code (compiled from PTX for an older architecture, the wait is
// not in them, so they are launched the ordinary way); FW_CUDA_PDL=0 in the
// environment, or set_programmatic_launch(false), launches everything the
// ordinary way (the benchmark compares both).
void set_programmatic_launch(bool on);
bool programmatic_launch();  // switched on and supported by the current device

}  // namespace cuda
}  // namespace fw
