#!/usr/bin/env python3
"""Turns native/cuda/decode.cu (the decode step's device-position kernels)
into C++ that runs on the CPU.

decode.cu is plain CUDA C++ plus atomicInc, __threadfence and __ldcg, which
emu_simt.h provides. The whole file is kept, host launchers included:
launch_pdl and the triple-chevron launches become emu_launch, which runs the
blocks one after another (a legal schedule here: no block waits for
another; in the split-K attention the last block to draw a ticket
combines). launch.cuh and cuda_check.h are stubbed, and decode_emu_main.inc
checks the launchers against CPU references (native/CMakeLists.txt:
decode_emu; docs/cuda.md).

Usage: decode_emu.py <native/cuda dir> <out.cc>
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops_emu import STUBS, convert_launches, static_smem, strip  # noqa: E402

cuda_dir, out = sys.argv[1], sys.argv[2]


def read(name):
    return open(os.path.join(cuda_dir, name)).read()


common = static_smem(strip(read("cuda_common.cuh")))
headers = strip(read("decode.cuh")) + strip(read("ops_attention.cuh"))
kernels, _ = convert_launches(static_smem(strip(read("decode.cu"))))
src = "\n".join(['#include "emu_simt.h"', '#include "common.h"', "#include <climits>", common, headers, STUBS, kernels,
                 '#include "decode_emu_main.inc"', ""])
if "asm" in re.sub(r"//.*", "", src):
    sys.exit("decode_emu.py: inline PTX in decode.cu or cuda_common.cuh: stub it in emu_simt.h")
open(out, "w").write(src)
