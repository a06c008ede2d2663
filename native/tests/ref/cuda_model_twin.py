#!/usr/bin/env python3
"""The CUDA model's bf16 (or fp16) forward and backward, replayed on the CPU.

A step-by-step twin of native/cuda/model_cuda.cpp in its 16-bit modes: the
same sequence of kernels and cuBLAS calls, each computed in fp32 and
rounded to the storage type exactly where the GPU stores it -- every kernel
output, the separate bias adds, the GEMMs that accumulate into a 16-bit
buffer (beta = 1: the residual adds, the input gradients of q/k/v and of
gate/up, the weight gradients), the tied embedding's two gradient
contributions, the tensor-core attention's bf16 P and dS (bf16 at head
sizes 64 and 128; the CUDA-core path, and fp16, keep them fp32) and
D = rowsum(dO * O) from the stored output. It is run on the exact instances
of cuda_model_test's parity cases (weights, batch; written by
fw_parity_bundles) and compared with the test's reference, fp32 on the same
rounded weights, by the test's metrics: the norm-wise relative error
||twin - ref|| / ||ref|| and the element-wise max|diff| / max|ref|, for the
logits and every gradient.

What it leaves out: the order of fp32 accumulation inside each kernel
(a few fp32 ulps), the online softmax's rescaling before P is rounded, and
any kernel bug. So it predicts what the GPU test should print, to within
the accumulation-order noise, on a machine without a GPU.

Usage (Debian's python3 with python3-torch):
    fw_parity_bundles DIR 0.02 300        # the instances of ..._at_hf_init_scale
    /usr/bin/python3 native/tests/ref/cuda_model_twin.py DIR [--all]
or in one step, with the test's bounds, as CTest runs it:
    /usr/bin/python3 native/tests/ref/cuda_model_twin.py --make-bundles \
        native/build/fw_parity_bundles --std 0.02 --seed 300 --check \
        --bound-for k_proj.bias=2.5e-2
    ... --dtype fp16 --std 0.1 --seed 400   # forward_backward_match_cpu_fp16
"""
import argparse
import glob
import math
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # CTest skips on exit code 77
    print("cuda_model_twin.py: this python has no torch (Debian: python3-torch); skipped")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402  (read_bundle, Dims, the fp32 reference forward)

IGNORE = -100


STORAGE = {"dtype": None}  # torch.bfloat16 (default) or torch.float16, set by main()


def rb(x):
    """Round to the storage type (nearest even, fp16 with its subnormals) and
    back, as __float2bfloat16_rn / __float2half_rn store."""
    return x.to(STORAGE["dtype"] or torch.bfloat16).to(torch.float32)


def rope_tables(T, HS, theta):
    # rope_tables_kernel: angle in double, cos / sin rounded to fp32
    i = torch.arange(HS // 2, dtype=torch.float64)
    a = torch.arange(T, dtype=torch.float64)[:, None] * theta ** (-2.0 * i / HS)
    return a.cos().float(), a.sin().float()


def rope(x, cos, sin, sign):
    """rope_kernel on (B, T, H, HS): pairs (i, i + HS/2), sign -1 backward."""
    h = x.shape[-1] // 2
    c, s = cos[None, :, None, :], sign * sin[None, :, None, :]
    x1, x2 = x[..., :h], x[..., h:]
    return rb(torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), -1))


def rms_fwd(x, w, eps):
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return rb(x * r * w), r


def rms_bwd(dres, dy, x, w, r):
    """rmsnorm_backward: dres + the row's gradient, rounded once; dweight in fp32."""
    C = x.shape[-1]
    dot = (w * dy * x).sum(-1, keepdim=True) * r / C
    dres = rb(dres + r * (w * dy - x * r * dot))
    dw = (dy * x * r).reshape(-1, C).sum(0)
    return dres, dw


def attn_fwd(q, k, v, tc):
    """(B, H, T, HS) each, k / v already expanded to the query heads."""
    HS, T = q.shape[-1], q.shape[-2]
    s = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
    s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    m = s.amax(-1, keepdim=True)
    p = torch.exp(s - m)
    l = p.sum(-1, keepdim=True)
    o = rb(((rb(p) if tc else p) @ v) / l)
    return o, m + torch.log(l)  # lse


def attn_bwd(do, o, q, k, v, lse, tc, G):
    HS, T = q.shape[-1], q.shape[-2]
    scale = 1.0 / math.sqrt(HS)
    s = (q @ k.transpose(-2, -1)) * scale
    s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    p = torch.exp(s - lse)
    d = (do * o).sum(-1, keepdim=True)  # from the stored bf16 output
    dv = (rb(p) if tc else p).transpose(-2, -1) @ do
    dp = do @ v.transpose(-2, -1)
    ds = p * (dp - d)
    if tc:
        ds = rb(ds)
    dq = rb(ds @ k * scale)
    dk = ds.transpose(-2, -1) @ q * scale
    B, H = q.shape[0], q.shape[1]
    # GQA: one kernel per kv head sums its query heads in fp32, rounds once
    dk = rb(dk.view(B, H // G, G, T, HS).sum(2))
    dv = rb(dv.view(B, H // G, G, T, HS).sum(2))
    return dq, dk, dv


def twin(p, d, tokens, targets):
    """Logits and parameter gradients as the CUDA model in bf16 computes them."""
    B, T = tokens.shape
    N, C, NH, KVH, HS = B * T, d.C, d.NH, d.KVH, d.HS
    G = NH // KVH
    # ops_attention.cu dispatches bf16 training attention at these head sizes
    # to the tensor-core kernels; fp16 runs the CUDA-core ones
    tc = HS in (64, 128) and STORAGE["dtype"] in (None, torch.bfloat16)
    cos, sin = rope_tables(T, HS, d.theta)
    P = lambda n: p.get(n)  # noqa: E731
    lin = lambda x, w: x @ w.t()  # noqa: E731  an fp32 product of bf16 operands

    def heads(x, H):  # (N, H*HS) -> (B, H, T, HS)
        return x.view(B, T, H, HS).transpose(1, 2)

    def flat(x):  # (B, H, T, HS) -> (N, H*HS)
        return x.transpose(1, 2).reshape(N, -1)

    x = p["model.embed_tokens.weight"][tokens.view(-1)]
    acts = []
    for l in range(d.L):
        pre = f"model.layers.{l}."
        w = lambda n: p[pre + n]  # noqa: E731
        a = {"x": x}
        a["ln1"], a["r1"] = rms_fwd(x, w("input_layernorm.weight"), d.eps)
        for n, D in (("q", NH * HS), ("k", KVH * HS), ("v", KVH * HS)):
            y = rb(lin(a["ln1"], w(f"self_attn.{n}_proj.weight")))
            b = P(pre + f"self_attn.{n}_proj.bias")
            a[n] = rb(y + b) if b is not None else y
        a["q"] = rope(a["q"].view(B, T, NH, HS), cos, sin, 1.0).view(N, -1)
        a["k"] = rope(a["k"].view(B, T, KVH, HS), cos, sin, 1.0).view(N, -1)
        kx = heads(a["k"], KVH).repeat_interleave(G, 1)
        vx = heads(a["v"], KVH).repeat_interleave(G, 1)
        o, a["lse"] = attn_fwd(heads(a["q"], NH), kx, vx, tc)
        a["atty"] = flat(o)
        xmid = rb(x + lin(a["atty"], w("self_attn.o_proj.weight")))  # residual copy, GEMM beta = 1
        b = P(pre + "self_attn.o_proj.bias")
        a["xmid"] = rb(xmid + b) if b is not None else xmid
        a["ln2"], a["r2"] = rms_fwd(a["xmid"], w("post_attention_layernorm.weight"), d.eps)
        a["gate"] = rb(lin(a["ln2"], w("mlp.gate_proj.weight")))
        a["up"] = rb(lin(a["ln2"], w("mlp.up_proj.weight")))
        g = a["gate"]
        a["h"] = rb(g * torch.sigmoid(g) * a["up"])
        x = rb(a["xmid"] + lin(a["h"], w("mlp.down_proj.weight")))
        acts.append(a)
    lnf, rf = rms_fwd(x, p["model.norm.weight"], d.eps)
    lm_name = "model.embed_tokens.weight" if d.tied else "lm_head.weight"
    logits = rb(lin(lnf, p[lm_name]))

    # cross-entropy: dlogits = (softmax - onehot) / n, rounded once
    tg = targets.view(-1)
    keep = tg != IGNORE
    n = max(int(keep.sum()), 1)
    dlog = torch.softmax(logits, -1)
    dlog[keep, tg[keep]] -= 1.0
    dlog[~keep] = 0.0
    dlog = rb(dlog / n)

    grads = {}

    def acc(name, g):  # into the zeroed bf16 gradient buffer (beta = 1)
        grads[name] = rb(grads.get(name, torch.zeros_like(g)) + g)

    dlnf = rb(dlog @ p[lm_name])
    acc(lm_name, dlog.t() @ lnf)
    dres, dw = rms_bwd(torch.zeros_like(x), dlnf, x, p["model.norm.weight"], rf)
    acc("model.norm.weight", dw)
    for l in range(d.L - 1, -1, -1):
        pre = f"model.layers.{l}."
        w = lambda n: p[pre + n]  # noqa: E731
        a = acts[l]
        dh = rb(dres @ w("mlp.down_proj.weight"))
        acc(pre + "mlp.down_proj.weight", dres.t() @ a["h"])
        g, u = a["gate"], a["up"]
        sg = torch.sigmoid(g)
        dgate = rb(dh * u * sg * (1.0 + g * (1.0 - sg)))
        dup = rb(dh * g * sg)
        dln = rb(dgate @ w("mlp.gate_proj.weight"))
        dln = rb(dln + dup @ w("mlp.up_proj.weight"))  # accumulate_dinp
        acc(pre + "mlp.gate_proj.weight", dgate.t() @ a["ln2"])
        acc(pre + "mlp.up_proj.weight", dup.t() @ a["ln2"])
        dres, dw = rms_bwd(dres, dln, a["xmid"], w("post_attention_layernorm.weight"), a["r2"])
        acc(pre + "post_attention_layernorm.weight", dw)
        datty = rb(dres @ w("self_attn.o_proj.weight"))
        acc(pre + "self_attn.o_proj.weight", dres.t() @ a["atty"])
        if pre + "self_attn.o_proj.bias" in p:
            acc(pre + "self_attn.o_proj.bias", dres.sum(0))
        dq, dk, dv = attn_bwd(heads(datty, NH), heads(a["atty"], NH), heads(a["q"], NH),
                              heads(a["k"], KVH).repeat_interleave(G, 1), heads(a["v"], KVH).repeat_interleave(G, 1),
                              a["lse"], tc, G)
        dq = rope(dq.transpose(1, 2), cos, sin, -1.0).reshape(N, -1)
        dk = rope(dk.transpose(1, 2), cos, sin, -1.0).reshape(N, -1)
        dv = flat(dv)
        dln = None
        for nm, dy in (("q", dq), ("k", dk), ("v", dv)):
            wn = pre + f"self_attn.{nm}_proj.weight"
            part = dy @ p[wn]
            dln = rb(part) if dln is None else rb(dln + part)
            acc(wn, dy.t() @ a["ln1"])
            if pre + f"self_attn.{nm}_proj.bias" in p:
                acc(pre + f"self_attn.{nm}_proj.bias", dy.sum(0))
        dres, dw = rms_bwd(dres, dln, a["x"], w("input_layernorm.weight"), a["r1"])
        acc(pre + "input_layernorm.weight", dw)
    # embedding_backward: each row's positions summed in fp32, added once
    emb = torch.zeros_like(p["model.embed_tokens.weight"])
    emb.index_add_(0, tokens.view(-1), dres)
    rows = torch.unique(tokens.view(-1))
    cur = grads.get("model.embed_tokens.weight", torch.zeros_like(emb))
    cur[rows] = rb(cur[rows] + emb[rows])
    grads["model.embed_tokens.weight"] = cur
    return logits.view(B, T, -1), grads


def reference(p, d, tokens, targets):
    """The test's reference: fp32 on the same bf16 weights (llama_ref.forward)."""
    q = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    logits = llama_ref.forward(q, d, tokens)
    F.cross_entropy(logits.view(-1, d.V), targets.view(-1), ignore_index=IGNORE).backward()
    return logits.detach(), {k: v.grad for k, v in q.items()}


def autocast(p, d, tokens, targets):
    """PyTorch's bf16 mixed precision on the same weights, for comparison:
    torch.autocast on the CPU (bf16 matmuls, fp32 parameters and residual)."""
    q = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = llama_ref.forward(q, d, tokens)
        loss = F.cross_entropy(logits.float().view(-1, d.V), targets.view(-1), ignore_index=IGNORE)
    loss.backward()
    return logits.detach().float(), {k: v.grad.float() for k, v in q.items()}


def metrics(a, b):
    """cuda_model_test's expect_close: norm-wise and element-wise relative error."""
    l2 = (a - b).norm().item() / max(b.norm().item(), 1e-300)
    mx = (a - b).abs().max().item() / max(b.abs().max().item(), 1e-30)
    return l2, mx


def bound_for(name, args):
    for spec in args.bound_for:
        sub, b = spec.rsplit("=", 1)
        if sub in name:
            return float(b)
    return args.logits_bound if name == "logits" else args.bound


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", nargs="?", help="the bundles fw_parity_bundles wrote")
    ap.add_argument("--make-bundles", metavar="TOOL", help="run fw_parity_bundles TOOL into a temporary folder first")
    ap.add_argument("--std", default="0.02", help="with --make-bundles: the init std (default 0.02)")
    ap.add_argument("--seed", default="300", help="with --make-bundles: the test's first seed (default 300)")
    ap.add_argument("--bound", type=float, default=1e-2, help="norm-wise bound on the gradients (default 1e-2)")
    ap.add_argument("--logits-bound", type=float, default=1e-2, help="norm-wise bound on the logits (default 1e-2)")
    ap.add_argument("--max-bound", type=float, default=5e-2, help="element-wise bound (default 5e-2)")
    ap.add_argument("--bound-for", action="append", default=[], metavar="SUBSTR=B",
                    help="norm-wise bound for the tensors whose name contains SUBSTR (repeatable)")
    ap.add_argument("--dtype", choices=["bf16", "fp16"], default="bf16", help="the model's storage type (default bf16)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a tensor is over its bound")
    ap.add_argument("--all", action="store_true", help="print every tensor, not only each case's worst")
    ap.add_argument("--autocast", action="store_true", help="also print PyTorch bf16 autocast's errors")
    args = ap.parse_args()
    torch.set_num_threads(2)
    STORAGE["dtype"] = torch.float16 if args.dtype == "fp16" else torch.bfloat16
    tmp = None
    if args.make_bundles:
        tmp = tempfile.mkdtemp(prefix="fw_model_twin_")
        subprocess.run([args.make_bundles, tmp, args.std, args.seed], check=True, stdout=subprocess.DEVNULL)
        args.dir = tmp
    if not args.dir:
        ap.error("give the bundles' folder or --make-bundles")
    worst_l, worst_g, over = (0.0, ""), (0.0, ""), []
    paths = sorted(glob.glob(os.path.join(args.dir, "case*.json")))
    if not paths:
        sys.exit(f"no case*.json bundles in {args.dir}")
    for path in paths:
        meta, t = llama_ref.read_bundle(path[:-5])
        d = llama_ref.Dims(meta["config"])
        B, T = meta["B"], meta["T"]
        tokens = torch.tensor(meta["tokens"], dtype=torch.int64).view(B, T)
        targets = torch.tensor(meta["targets"], dtype=torch.int64).view(B, T)
        p = {k: rb(v) for k, v in t.items()}  # the weights both sides share (rounded to the storage type)
        tl, tgr = twin(p, d, tokens, targets)
        rl, rgr = reference(p, d, tokens, targets)
        rows = [("logits", *metrics(tl, rl))] + [("d " + k, *metrics(tgr[k], rgr[k])) for k in rgr]
        print(f"{meta['name']} (seed {meta['seed']}, std {meta['init_std']}):")
        if args.autocast:
            al, agr = autocast(p, d, tokens, targets)
            arows = [("logits", *metrics(al, rl))] + [("d " + k, *metrics(agr[k], rgr[k])) for k in rgr]
            for sel, label in ((lambda n: "k_proj.bias" not in n, "other than the key bias"),
                               (lambda n: "k_proj.bias" in n, "key bias")):
                tw = [r for r in rows[1:] if sel(r[0])]
                au = [r for r in arows[1:] if sel(r[0])]
                if tw:
                    print(f"  worst gradient {label}: twin {max(r[1] for r in tw):.3e}, "
                          f"autocast {max(r[1] for r in au):.3e}")
            print(f"  logits: twin {rows[0][1]:.3e}, autocast {arows[0][1]:.3e}")
        for name, l2, mx in rows:
            b = bound_for(name, args)
            bad = not (l2 <= b and mx <= args.max_bound)  # NaN is over any bound
            if bad:
                over.append(f"{meta['name']}: {name}")
            if args.all or bad or name == "logits" or (name, l2, mx) == max(rows[1:], key=lambda r: r[1]):
                print(f"  {'OVER' if bad else 'ok':4s} {name:52s} l2 rel {l2:.3e} (bound {b:.1e})  max rel {mx:.3e}")
        if rows[0][1] > worst_l[0]:
            worst_l = (rows[0][1], meta["name"])
        g = max(rows[1:], key=lambda r: r[1])
        if g[1] > worst_g[0]:
            worst_g = (g[1], f"{meta['name']}: {g[0]}")
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"worst logits {worst_l[0]:.3e} ({worst_l[1]}); worst gradient {worst_g[0]:.3e} ({worst_g[1]}); "
          f"{len(over)} tensor(s) over their bounds")
    if args.check and over:
        sys.exit(1)


if __name__ == "__main__":
    main()
