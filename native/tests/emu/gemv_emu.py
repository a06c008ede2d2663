#!/usr/bin/env python3
"""Turns native/cuda/gemv.cu (the decode GEMVs) into C++ that runs on the CPU.

gemv.cu's kernels are plain CUDA C++: warp shuffles, __syncthreads, 16-byte
vector loads, and two inline-PTX helpers from launch.cuh (an L2 prefetch and
the programmatic-launch wait) that change no value. This script concatenates
cuda_common.cuh, gemv.cuh and the kernels of gemv.cu (up to the host
launchers) behind emu_simt.h, which runs a kernel's blocks one after another
with a fiber per CUDA thread and stubs the two helpers, then appends
gemv_emu_main.inc, which checks every kernel against a CPU reference
(native/CMakeLists.txt: gemv_emu; docs/cuda.md).

Usage: gemv_emu.py <native/cuda dir> <out.cc>
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops_emu import STUBS, static_smem, strip  # noqa: E402  (shared with the other transforms)

cuda_dir, out = sys.argv[1], sys.argv[2]


def read(name):
    return open(os.path.join(cuda_dir, name)).read()


common = static_smem(strip(read("cuda_common.cuh")))
header = strip(read("gemv.cuh"))
kernels = read("gemv.cu")
cut = kernels.find("// Runs CALL with the compile-time constant R")
if cut < 0:
    sys.exit("gemv_emu.py: gemv.cu's launcher section moved: update the cut point")
kernels = static_smem(strip(kernels[:cut])) + "}  // namespace\n}  // namespace cuda\n}  // namespace fw\n"
src = "\n".join(['#include "emu_simt.h"', common, header, STUBS, kernels, '#include "gemv_emu_main.inc"', ""])
if "asm" in re.sub(r"//.*", "", src):
    sys.exit("gemv_emu.py: inline PTX in gemv.cu or cuda_common.cuh: stub it in emu_simt.h")
open(out, "w").write(src)
