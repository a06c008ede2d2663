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
import re
import sys
src = open(sys.argv[1]).read()
def remove_fn(s, pattern):
    m = re.search(pattern, s)
    if not m:
        return s, False
    start = s.rfind("\n", 0, m.start()) + 1
    # include a preceding template line
    prev = s.rfind("\n", 0, start - 1) + 1
    if s[prev:start].startswith("template <int N>"):
        start = prev
    i = s.index("{", m.end())
    depth = 0
    while True:
        if s[i] == "{": depth += 1
        elif s[i] == "}":
            depth -= 1
            if depth == 0: break
        i += 1
    end = s.index("\n", i) + 1
    return s[:start] + "// [emu] removed: " + m.group(0) + "\n" + s[end:], True
removed = []
for name in ["mma_bf16", "ldmatrix_x4_trans", "ldmatrix_x4", "cp_async16", "cp_async_commit", "cp_async_wait", "fast_exp2"]:
    src, ok = remove_fn(src, r"__device__ __forceinline__ (?:void|float) " + name + r"\(")
    if ok: removed.append(name)
expected = ["mma_bf16", "ldmatrix_x4_trans", "ldmatrix_x4", "cp_async16", "cp_async_commit", "cp_async_wait", "fast_exp2"]
if removed != expected:
    sys.exit("tc_attention_emu.py: the PTX helpers of ops_attention_tc.cu changed (removed %s of %s): update emu_shim.h"
             % (removed, expected))
src = src.replace('#include "ops_attention_tc.cuh"', '#include "emu_shim.h"')
n = src.count("extern __shared__ __align__(16) unsigned char smem_raw[];")
src = src.replace("extern __shared__ __align__(16) unsigned char smem_raw[];", "unsigned char* smem_raw = emu.smem;")
if n == 0:
    sys.exit("tc_attention_emu.py: no dynamic shared memory declaration found in the kernels")
cut = src.index("template <typename K>\nvoid set_smem_tc")
src = src[:cut] + '#include "emu_driver.inc"\n}  // namespace\n}  // namespace cuda\n}  // namespace fw\n#include "emu_main.inc"\n'
assert "asm" not in re.sub(r"//.*", "", src), "asm left"
open(sys.argv[2], "w").write(src)
