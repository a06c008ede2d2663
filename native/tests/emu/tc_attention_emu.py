#!/usr/bin/env python3
"""Turns native/cuda/ops_attention_tc.cu into C++ that runs on the CPU.

The tensor-core attention kernels are plain CUDA C++ apart from a few
inline-PTX helpers (mma.sync, ldmatrix, cp.async, ex2). This script removes
those helpers from a copy of the source and includes emu_shim.h instead, which
gives each of them its PTX ISA semantics (fragment layouts, row addresses,
commit groups) with one std::thread per CUDA thread and warp-collective
operations through per-warp barriers. emu_driver.inc launches the kernels
block by block and emu_main.inc checks the outputs against an fp64
reference, so the kernels' index and fragment logic is tested without a GPU
(native/CMakeLists.txt: tc_attention_emu, and docs/cuda.md).

Usage: tc_attention_emu.py <ops_attention_tc.cu> <out.cc>
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops_emu import remove_tc_ptx  # noqa: E402  (shared with the emulated backend)

src = remove_tc_ptx(open(sys.argv[1]).read(), "tc_attention_emu.py")
src = src.replace('#include "ops_attention_tc.cuh"', '#include "emu_shim.h"')
n = src.count("extern __shared__ __align__(16) unsigned char smem_raw[];")
src = src.replace("extern __shared__ __align__(16) unsigned char smem_raw[];", "unsigned char* smem_raw = emu.smem;")
if n == 0:
    sys.exit("tc_attention_emu.py: no dynamic shared memory declaration found in the kernels")
cut = src.index("template <typename K>\nvoid set_smem_tc")
src = src[:cut] + '#include "emu_driver.inc"\n}  // namespace\n}  // namespace cuda\n}  // namespace fw\n#include "emu_main.inc"\n'
assert "asm" not in re.sub(r"//.*", "", src), "asm left"
open(sys.argv[2], "w").write(src)
