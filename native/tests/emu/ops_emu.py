#!/usr/bin/env python3
"""Turns training kernels of native/cuda (ops_rmsnorm.cu, ops_embedding.cu,
ops_swiglu.cu, ops_loss.cu, ops_linear.cu, ops_attention.cu's CUDA-core
attention, optim.cu, lora_dropout.cu, cast.cu and quant.cu's INT8 matmul)
into C++ that runs on the CPU, one translation unit per file.

Each file is kept whole, kernels and host launchers: its includes are
replaced by emu_simt.h, cuda_common.cuh and its own header, launch_pdl is
routed to emu_launch (STUBS), and every triple-chevron launch
`kernel<<<grid, block, smem, stream>>>(args);` becomes
an emu_launch of `[=] { kernel(args); }` (arguments copied at the launch,
run when the stream gets to it, pointers and configuration checked), so the
launchers' own grid sizing and path choice (packed or scalar) are what runs;
dynamic shared memory comes from emu_dyn_smem, sized by the launch, and
static __shared__ arrays from emu_static_smem: both fresh for every block
and NaN until written. decode_emu.py and gemv_emu.py reuse static_smem.
ops_emu_api.h gathers the files' headers (their launchers' declarations)
for ops_emu_main.cpp, which checks them against CPU references
(native/CMakeLists.txt: ops_emu; docs/cuda.md). decode_emu.py reuses
strip, convert_launches, static_smem and STUBS.

Usage: ops_emu.py [--lib] <native/cuda dir> <out dir> <file.cu>...

--lib: for the emulated backend fw_cuda_emu (every .cu but launch.cu,
behind emu_cuda.h): failed runtime calls throw through the real
cuda_check.h instead of being ignored, ops_attention.cu dispatches to the
tensor-core kernels, and ops_attention_tc.cu's PTX helpers come from
emu_ptx.h.
"""
import os
import re
import sys

# cuda_check.h and launch.cuh for the emulator: the PTX helpers change no
# value, and a programmatic launch is an ordinary one here.
STUBS = """
#define FW_CUDA_CHECK(call) (void)(call)
#define FW_CUDA_CHECK_LAUNCH()
namespace fw {
namespace cuda {
__device__ __forceinline__ void pdl_wait_then_trigger() { emu_pdl_wait(); }
__device__ __forceinline__ void warp_prefetch_l2(const void*, size_t) {}
template <typename... KArgs, typename... Args>
void launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, cudaStream_t stream, Args&&... args) {
  emu_check_args("a programmatic launch", static_cast<KArgs>(args)...);
  emu_launch(grid, block, [=] { kernel(static_cast<KArgs>(args)...); }, 0, stream, emu_fn_id(kernel),
             "a programmatic launch", true);
}
}  // namespace cuda
}  // namespace fw
"""

# Launch sizes the emulator cannot afford, made smaller; the kernels are
# grid-stride loops, so only the split of the work changes.
SHRINK = {"optim.cu": ("constexpr int kNormBlocks = 1024;", "constexpr int kNormBlocks = 16;  // [emu] 1024 on the GPU")}


def strip(src):
    src = re.sub(r"^#pragma once\n", "", src, flags=re.M)
    return re.sub(r'^#include [<"][^>"]*[>"]\n', "", src, flags=re.M)


def split_top(s):
    """Split at commas outside (), [] and {} (launch configs nest only those)."""
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def convert_launches(src):
    """Every kernel<<<grid, block, ...>>>(args); as an emu_launch; returns (src, count)."""
    out, i, n = "", 0, 0
    while True:
        j = src.find("<<<", i)
        if j < 0:
            return out + src[i:], n
        # the kernel expression: identifier with template arguments, back from <<<
        k, depth = j, 0
        while k > 0:
            c = src[k - 1]
            if c == ">":
                depth += 1
            elif c == "<":
                depth -= 1
            elif depth == 0 and not (c.isalnum() or c in "_:"):
                break
            k -= 1
        kernel = src[k:j]
        e = src.index(">>>", j)
        cfg = split_top(src[j + 3:e])
        if src[e + 3] != "(":
            sys.exit("ops_emu.py: expected '(' after >>> in " + kernel)
        p, depth = e + 3, 0
        while True:
            if src[p] == "(":
                depth += 1
            elif src[p] == ")":
                depth -= 1
                if depth == 0:
                    break
            p += 1
        args = src[e + 4:p]
        if src[p + 1] != ";":
            sys.exit("ops_emu.py: expected ';' after the launch of " + kernel)
        smem = "(size_t)(%s)" % cfg[2] if len(cfg) > 2 else "0"
        stream = cfg[3] if len(cfg) > 3 else "0"
        # [=]: the arguments are copied at the launch, which runs when its stream gets to it; the
        # pointer arguments and the launch configuration are checked at the launch
        name = '"%s"' % kernel.replace('"', "")
        out += src[i:k] + ("{ emu_check_args(%s%s); emu_launch(dim3(%s), dim3(%s), [=] { %s(%s); }, %s, %s, "
                           "emu_fn_id(%s), %s); }") % (name, ", " + args if args.strip() else "", cfg[0], cfg[1],
                                                      kernel, args, smem, stream, kernel, name)
        i, n = p + 2, n + 1


_SITES = [0]  # declarator numbers, unique across the files of one translation unit


def static_smem(src):
    """`__shared__ T a[N], b[M][K], c;` as per-block storage from
    emu_static_smem (all-ones bytes, a NaN in every float type, until
    written; fresh for every block), one site number per declarator. Fails
    on a declaration it cannot read, so none is left to a C++ static."""
    site = _SITES

    def one(t, decl):
        m = re.fullmatch(r"(\w+)((?:\[[^\]]+\])*)", decl.strip())
        if not m:
            sys.exit("emu: cannot read the __shared__ declaration '%s %s'" % (t, decl))
        name, dims = m.group(1), re.findall(r"\[([^\]]+)\]", m.group(2))
        site[0] += 1
        if not dims:
            return "%s& %s = *emu_static_smem<%s>(%d, 1);" % (t, name, t, site[0])
        if len(dims) == 1:
            return "%s* %s = emu_static_smem<%s>(%d, (%s));" % (t, name, t, site[0], dims[0])
        inner = "".join("[%s]" % d for d in dims[1:])
        size = "*".join("(%s)" % d for d in dims)
        return "auto %s = reinterpret_cast<%s(*)%s>(emu_static_smem<%s>(%d, %s));" % (name, t, inner, t, site[0], size)

    def decl(m):
        t, rest = m.group(1), m.group(2)
        parts, depth, cur = [], 0, ""
        for ch in rest:
            depth += ch == "["
            depth -= ch == "]"
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        return " ".join(one(t, d) for d in parts)

    out = re.sub(r"(?<!extern )__shared__ ((?:unsigned |signed )?\w+) ([^;]+);", decl, src)
    if re.search(r"(?<!extern )__shared__", re.sub(r"//.*", "", out)):
        sys.exit("emu: a __shared__ declaration was left unconverted")
    return out


def dynamic_smem(src):
    """`extern __shared__ T name[];` (dynamic shared memory) as emu_dyn_smem."""
    return re.sub(r"extern __shared__ (?:__align__\(\d+\) )?([\w ]+?) (\w+)\[\];",
                  r"\1* \2 = emu_dyn_smem<\1>();", src)


# What a file calls that the emulator does not build: the CUDA-core
# attention's dispatch to the tensor-core kernels (tc_attention_emu covers
# those) never taken here.
EXTRA = {"ops_attention.cu": """
namespace fw {
namespace cuda {
bool attention_tc_supported(int, const void*, const void*, const void*, const void*, const void* = nullptr,
                            const void* = nullptr, const void* = nullptr) { return false; }
void attention_forward_tc(bf16*, float*, const bf16*, const bf16*, const bf16*, int, int, int, int, int, cudaStream_t) {
  FW_CHECK(false, kInternal, "emulator: no tensor-core attention here");
}
void attention_backward_tc(bf16*, bf16*, bf16*, const float*, const bf16*, const float*, const bf16*, const bf16*,
                           const bf16*, int, int, int, int, int, cudaStream_t) {
  FW_CHECK(false, kInternal, "emulator: no tensor-core attention here");
}
}  // namespace cuda
}  // namespace fw
"""}


# Headers a file includes besides its own (in --lib mode, ops_attention.cu
# dispatches to the tensor-core kernels).
MORE_HEADERS = {"decode.cu": ["ops_attention.cuh"]}
LIB_MORE_HEADERS = {"ops_attention.cu": ["ops_attention_tc.cuh"]}

# The inline-PTX helpers of ops_attention_tc.cu, which emu_ptx.h gives
# instead (the emulated backend and tc_attention_emu).
TC_PTX_HELPERS = ["mma_bf16", "ldmatrix_x4_trans", "ldmatrix_x4", "cp_async16", "cp_async_commit", "cp_async_wait",
                  "fast_exp2"]


def remove_device_fn(src, name):
    """Removes `__device__ __forceinline__ void|float name(...) {...}` (with a
    `template <int N>` line before it); returns (src, removed)."""
    m = re.search(r"__device__ __forceinline__ (?:void|float) " + name + r"\(", src)
    if not m:
        return src, False
    start = src.rfind("\n", 0, m.start()) + 1
    prev = src.rfind("\n", 0, start - 1) + 1
    if src[prev:start].startswith("template <int N>"):
        start = prev
    i, depth = src.index("{", m.end()), 0
    while True:
        if src[i] == "{":
            depth += 1
        elif src[i] == "}":
            depth -= 1
            if depth == 0:
                break
        i += 1
    end = src.index("\n", i) + 1
    return src[:start] + "// [emu] removed: " + m.group(0) + "\n" + src[end:], True


def remove_tc_ptx(src, who):
    for name in TC_PTX_HELPERS:
        src, ok = remove_device_fn(src, name)
        if not ok:
            sys.exit("%s: ops_attention_tc.cu no longer has the PTX helper %s: update emu_ptx.h"
                     % (who, name))
    return src

# For the emulated backend (--lib): the real cuda_check.h, so a failed call
# throws as it does on a GPU.
LIB_STUBS = STUBS.replace("#define FW_CUDA_CHECK(call) (void)(call)\n#define FW_CUDA_CHECK_LAUNCH()\n",
                          '#include "cuda_check.h"\n')
assert LIB_STUBS != STUBS


def main():
    lib = sys.argv[1] == "--lib"
    args = sys.argv[2:] if lib else sys.argv[1:]
    cuda_dir, out_dir, files = args[0], args[1], args[2:]

    def read(name):
        return open(os.path.join(cuda_dir, name)).read()

    common = static_smem(strip(read("cuda_common.cuh")))
    # the launchers' declarations (the files' own headers) for the test's main
    api = ["// generated by ops_emu.py from the headers of: " + " ".join(files), "#pragma once",
           '#include "emu_simt.h"', "#include <cstdint>", "#include <cstddef>"]
    api += [strip(read(os.path.splitext(f)[0] + ".cuh")) for f in files]
    open(os.path.join(out_dir, "ops_emu_api.h"), "w").write("\n".join(api) + "\n")
    for f in files:
        base = os.path.splitext(f)[0]
        text = read(f)
        if f in SHRINK:
            old, new = SHRINK[f]
            if old not in text:
                sys.exit("ops_emu.py: %s no longer has '%s': update SHRINK" % (f, old))
            text = text.replace(old, new)
        if f == "ops_attention_tc.cu":
            text = remove_tc_ptx(text, "ops_emu.py")
        body, _ = convert_launches(static_smem(dynamic_smem(strip(text))))
        more = MORE_HEADERS.get(f, []) + (LIB_MORE_HEADERS.get(f, []) if lib else [])
        headers = [strip(read(h)) for h in [base + ".cuh"] + more]
        extra = "" if lib and f in LIB_MORE_HEADERS else EXTRA.get(f, "")  # --lib: the real tensor-core dispatch
        src = "\n".join(['#include "emu_simt.h"', '#include "common.h"', '#include "train_rng.h"', "#include <type_traits>",
                          "#include <algorithm>", "#include <climits>"] +
                         (['#include "emu_ptx.h"'] if f == "ops_attention_tc.cu" else []) + [common] + headers +
                         [LIB_STUBS if lib else STUBS, extra, body, ""])
        if "asm" in re.sub(r"//.*", "", src):
            sys.exit("ops_emu.py: inline PTX in %s: stub it in emu_simt.h" % f)
        open(os.path.join(out_dir, base + "_emu.cc"), "w").write(src)


if __name__ == "__main__":
    main()
