#!/usr/bin/env python3
"""Turns the split-K decode attention of native/cuda/decode.cu into C++ that
runs on the CPU.

decode.cu's attention section (the split kernel, its last-block combine and
the host function attention_decode_dpos that sizes the chunks, picks the
vector width and launches) is plain CUDA C++ plus atomicInc, __threadfence
and __ldcg, which emu_simt.h provides; launch_pdl becomes emu_launch, which
runs the blocks one after another (for this kernel a legal schedule: no block
waits for another, the last one to draw a ticket combines). The script keeps
decode.cu up to the argmax section, stubs launch.cuh and cuda_check.h, and
appends decode_emu_main.inc, which checks the output against a CPU reference
(native/CMakeLists.txt: decode_emu; docs/cuda.md).

Usage: decode_emu.py <native/cuda dir> <out.cc>
"""
import os
import re
import sys

cuda_dir, out = sys.argv[1], sys.argv[2]


def read(name):
    return open(os.path.join(cuda_dir, name)).read()


def strip(src):
    src = re.sub(r"^#pragma once\n", "", src, flags=re.M)
    return re.sub(r'^#include [<"][^>"]*[>"]\n', "", src, flags=re.M)


common = strip(read("cuda_common.cuh"))
headers = strip(read("decode.cuh")) + strip(read("ops_attention.cuh"))
kernels = read("decode.cu")
cut = kernels.find("// ---------------------------------------------------------------- argmax, ints")
if cut < 0:
    sys.exit("decode_emu.py: decode.cu's argmax section moved: update the cut point")
kernels = strip(kernels[:cut]) + "}  // namespace cuda\n}  // namespace fw\n"
stubs = """
#define FW_CUDA_CHECK(call) (void)(call)
#define FW_CUDA_CHECK_LAUNCH()
namespace fw {
namespace cuda {
// launch.cuh: the PTX helpers change no value; launch_pdl runs the grid here
__device__ __forceinline__ void pdl_wait_then_trigger() {}
__device__ __forceinline__ void warp_prefetch_l2(const void*, size_t) {}
template <typename... KArgs, typename... Args>
void launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, cudaStream_t, Args&&... args) {
  emu_launch(grid, block, [&] { kernel(static_cast<KArgs>(args)...); });
}
}  // namespace cuda
}  // namespace fw
"""
src = "\n".join(['#include "emu_simt.h"', '#include "common.h"', "#include <climits>", common, headers, stubs, kernels,
                 '#include "decode_emu_main.inc"', ""])
if "asm" in re.sub(r"//.*", "", src):
    sys.exit("decode_emu.py: inline PTX in decode.cu's attention or cuda_common.cuh: stub it in emu_simt.h")
open(out, "w").write(src)
