#!/usr/bin/env python3
"""How far bf16 storage alone moves logits and gradients, on the CPU.

The CUDA model in bf16 computes every kernel in fp32 and rounds its output
to bf16 (activations, the residual stream, gradients). This script runs the
same Llama model in PyTorch on the CPU in fp32 and rounds to bf16 at those
same places (forward values and, through a custom autograd function, the
gradients flowing back through them), then reports the norm-wise relative
error ||x - ref|| / ||ref|| of the logits and of the worst parameter
gradient against the unrounded fp32 run on the same bf16-rounded weights.
That is the floor a bf16 kernel set cannot go below, whatever its
arithmetic; cuda_model_test's bf16 parity bounds are set from it
(docs/cuda.md, "bf16 parity").

Variants move single rounding points back to fp32 to show which ones
matter: the residual stream, the parameter gradients, flash attention's
bf16 probabilities (P) and score gradients (dS).

Usage (Debian's python3 with python3-torch):
    /usr/bin/python3 native/tests/ref/bf16_error_model.py [--std 0.02] [--std 0.1]

The model shapes are cuda_model_test's cases with tied embeddings and no
biases; weights are N(0, std) like fw::Model::init_random, norm weights
1 + N(0, 0.1) as the test perturbs them.
"""
import argparse
import math

import torch
import torch.nn.functional as F


class Round(torch.autograd.Function):
    """bf16 rounding of the value (fwd) and / or of its gradient (bwd)."""

    @staticmethod
    def forward(ctx, x, fwd, bwd):
        ctx.bwd = bwd
        return x.bfloat16().float() if fwd else x

    @staticmethod
    def backward(ctx, g):
        return (g.bfloat16().float() if ctx.bwd else g), None, None


class FlashAttention(torch.autograd.Function):
    """Causal attention with flash attention's backward: D = rowsum(dO * O)
    from the output as stored (bf16), not rowsum(dP * P) exactly; P and dS
    in bf16 for the products when flash_p."""

    @staticmethod
    def forward(ctx, q, k, v, mask, flash_p):
        s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        p = s.masked_fill(mask, float("-inf")).softmax(-1)
        pb = p.bfloat16().float() if flash_p else p
        o = pb @ v
        ctx.save_for_backward(q, k, v, p, o.bfloat16().float())
        ctx.flash_p = flash_p
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, p, o_stored = ctx.saved_tensors
        pb = p.bfloat16().float() if ctx.flash_p else p
        dv = pb.transpose(-2, -1) @ do
        dp = do @ v.transpose(-2, -1)
        d = (do * o_stored).sum(-1, keepdim=True)
        ds = p * (dp - d)
        if ctx.flash_p:
            ds = ds.bfloat16().float()
        scale = 1.0 / math.sqrt(q.shape[-1])
        return ds @ k * scale, ds.transpose(-2, -1) @ q * scale, dv, None, None


def rmsnorm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(T, HS, theta=10000.0):
    inv = 1.0 / (theta ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS))
    f = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    e = torch.cat((f, f), -1)
    return e.cos().float(), e.sin().float()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), -1)


def forward(p, c, tokens, v):
    """Logits (B, T, V); v: the variant's rounding switches (None: none)."""

    def act(x):  # a kernel's output and the gradient arriving at it
        return Round.apply(x, True, v["act_grads"]) if v else x

    def res(x):  # the residual stream
        return Round.apply(x, v["res_values"], v["res_grads"]) if v else x

    B, T = tokens.shape
    NH, KVH, HS = c["NH"], c["KVH"], c["HS"]
    cos, sin = rope_tables(T, HS)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    x = res(p["embed"][tokens])
    for l in range(c["L"]):
        w = lambda n: p[f"{l}.{n}"]  # noqa: E731
        h = act(rmsnorm(x, w("ln1")))
        q = act(h @ w("wq").t()).view(B, T, NH, HS).transpose(1, 2)
        k = act(h @ w("wk").t()).view(B, T, KVH, HS).transpose(1, 2)
        vv = act(h @ w("wv").t()).view(B, T, KVH, HS).transpose(1, 2)
        q = act(q * cos + rotate_half(q) * sin)
        k = act(k * cos + rotate_half(k) * sin)
        k = k.repeat_interleave(NH // KVH, 1)
        vv = vv.repeat_interleave(NH // KVH, 1)
        if v and v["flash_d"]:
            o = FlashAttention.apply(q, k, vv, mask, v["flash_p"])
        else:
            s = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
            if v and v["flash_p"]:
                s = Round.apply(s, False, True)  # dS in bf16 for the dQ, dK products
            a = s.masked_fill(mask, float("-inf")).softmax(-1)
            if v and v["flash_p"]:
                a = Round.apply(a, True, False)  # P in bf16 for the P @ V product
            o = a @ vv
        y = act(o.transpose(1, 2).reshape(B, T, NH * HS))
        x = res(x + y @ w("wo").t())
        h = act(rmsnorm(x, w("ln2")))
        g, u = act(h @ w("wg").t()), act(h @ w("wu").t())
        x = res(x + act(F.silu(g) * u) @ w("wd").t())
    x = act(rmsnorm(x, p["norm"]))
    return act(x @ p["embed"].t())


def init(c, std, seed):
    g = torch.Generator().manual_seed(seed)
    C, I, NH, KVH, HS = c["C"], c["I"], c["NH"], c["KVH"], c["HS"]
    n = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    p = {"embed": n(c["V"], C) * std, "norm": 1 + 0.1 * n(C)}
    for l in range(c["L"]):
        p.update({f"{l}.ln1": 1 + 0.1 * n(C), f"{l}.ln2": 1 + 0.1 * n(C), f"{l}.wq": n(NH * HS, C) * std,
                  f"{l}.wk": n(KVH * HS, C) * std, f"{l}.wv": n(KVH * HS, C) * std, f"{l}.wo": n(C, NH * HS) * std,
                  f"{l}.wg": n(I, C) * std, f"{l}.wu": n(I, C) * std, f"{l}.wd": n(C, I) * std})
    return {k: t.bfloat16().float() for k, t in p.items()}  # the weights both sides share


def run(p, c, tokens, targets, v):
    q = {k: t.clone().requires_grad_(True) for k, t in p.items()}
    logits = forward(q, c, tokens, v)
    F.cross_entropy(logits.view(-1, c["V"]), targets.view(-1), ignore_index=-100).backward()
    grads = {k: t.grad for k, t in q.items()}
    if v and v["param_grads"]:
        grads = {k: t.bfloat16().float() for k, t in grads.items()}
    return logits.detach(), grads


CASES = [
    dict(name="llama gqa tied", V=97, C=48, I=80, L=2, NH=4, KVH=2, HS=12, B=2, T=19),
    dict(name="qwen2 gqa", V=80, C=64, I=96, L=2, NH=4, KVH=1, HS=16, B=2, T=33),
    dict(name="llama hs64", V=128, C=128, I=256, L=2, NH=2, KVH=1, HS=64, B=2, T=70),
    dict(name="llama hs128", V=96, C=256, I=384, L=1, NH=2, KVH=2, HS=128, B=1, T=131),
]
ALL = dict(act_grads=True, res_values=True, res_grads=True, param_grads=True, flash_p=True, flash_d=True)
VARIANTS = {
    "bf16 everywhere (the CUDA model)": ALL,
    "  D = rowsum(dP * P) exactly, not from bf16 O": dict(ALL, flash_d=False),
    "  without flash attention's bf16 P, dS": dict(ALL, flash_p=False),
    "  fp32 parameter gradients": dict(ALL, param_grads=False),
    "  fp32 residual stream (values, grads)": dict(ALL, res_values=False, res_grads=False),
    "  both of the above": dict(ALL, res_values=False, res_grads=False, param_grads=False),
    "  only forward values in bf16": dict(ALL, act_grads=False, res_grads=False, param_grads=False),
}


def rel(a, b):
    return (a - b).norm().item() / max(b.norm().item(), 1e-30)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--std", type=float, action="append", help="weight std (repeatable); default 0.02 and 0.1")
    args = ap.parse_args()
    torch.set_num_threads(2)
    for std in args.std or [0.02, 0.1]:
        print(f"weights std {std}: worst case over {len(CASES)} models, norm-wise relative error vs fp32")
        worst = {name: [0.0, 0.0, ""] for name in VARIANTS}
        for i, c in enumerate(CASES):
            p = init(c, std, 1 + i)
            g = torch.Generator().manual_seed(100 + i)
            tokens = torch.randint(0, c["V"], (c["B"], c["T"]), generator=g)
            targets = torch.randint(0, c["V"], (c["B"], c["T"]), generator=g)
            targets[:, 0] = -100
            ref_logits, ref_grads = run(p, c, tokens, targets, None)
            for name, v in VARIANTS.items():
                logits, grads = run(p, c, tokens, targets, v)
                w = worst[name]
                w[0] = max(w[0], rel(logits, ref_logits))
                for k in grads:
                    e = rel(grads[k], ref_grads[k])
                    if e > w[1]:
                        w[1], w[2] = e, f"{c['name']}: {k}"
        print(f"  {'variant':42s} {'logits':>9s} {'gradient':>9s}  worst gradient")
        for name, (lo, gr, where) in worst.items():
            print(f"  {name:42s} {lo:9.2e} {gr:9.2e}  {where}")
        print()


if __name__ == "__main__":
    main()
