#!/usr/bin/env python3
"""GPU benchmark of the engine's CUDA backend side by side with PyTorch.

The model: a GPT-2-small-sized (124M) Llama-style decoder (tied embeddings,
RMSNorm, RoPE rotate_half, SwiGLU, causal attention), sequence 1024. For
PyTorch eager and torch.compile it measures
  - training tokens/s and MFU (bf16 autocast, fused AdamW), FLOPs per token
    6 N + 12 L T C (the PaLM / nanoGPT count: weights plus attention),
  - decode tokens/s at batch 1 and 64 with a static KV cache, and batch 1
    against the memory-bandwidth bound (bf16 weights + the KV cache read
    once per token),
  - peak memory of each phase.
The engine column comes from fw_cuda_model_bench (--model-bench: the CUDA
model loop at the same config, batch and sequence: CudaTrainer steps, greedy
KV-cache decode with the argmax on the device); below the table,
fw_cuda_kernel_bench's per-kernel times (--kernel-bench) next to PyTorch's for
the same ops.

PyTorch decode (the baseline the engine is compared with): prefill, then one
token per step through a fixed-shape step: static KV cache (B, KVH, S, HS) per
layer written with index_copy_ at a position held in a device tensor, attention
over the whole capacity S with a mask built from that position, greedy argmax
on the device, no .item() or host sync per token. Every step has the same
shapes, so torch.compile compiles it once; it uses mode="reduce-overhead"
(CUDA graphs): a 124M-parameter step at batch 1 is a few hundred small kernels
and launch-bound without them; the cache tensors are marked static
(torch._dynamo.mark_static_address, as Hugging Face's StaticCache does) so that
mutating them does not make the CUDA-graph backend skip the graph.
--decode-compile-mode picks another mode (e.g. max-autotune-no-cudagraphs).

  python3 bench/engine/cuda/bench.py --model-bench native/build-cuda/cuda/tests/fw_cuda_model_bench \
      --kernel-bench native/build-cuda/cuda/tests/fw_cuda_kernel_bench [--json out.json]
  python3 bench/engine/cuda/bench.py --tiny --device cpu --no-compile   # smoke test of the script itself
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIG = dict(vocab_size=50304, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
              num_attention_heads=12, num_key_value_heads=12, rope_theta=10000.0, rms_norm_eps=1e-5)
TINY = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, rope_theta=10000.0, rms_norm_eps=1e-5)

# Dense bf16 tensor-core peak (FLOP/s) and HBM bandwidth (bytes/s) by device
# name; override with FW_PEAK_TFLOPS / FW_HBM_TBPS.
DEVICES = [("H200", 989e12, 4.8e12), ("H100", 989e12, 3.35e12), ("A100", 312e12, 2.0e12)]


def device_peaks(name):
    peak, bw = None, None
    for key, p, b in DEVICES:
        if key in name:
            peak, bw = p, b
            break
    if os.environ.get("FW_PEAK_TFLOPS"):
        peak = float(os.environ["FW_PEAK_TFLOPS"]) * 1e12
    if os.environ.get("FW_HBM_TBPS"):
        bw = float(os.environ["FW_HBM_TBPS"]) * 1e12
    return peak, bw


class RMSNorm(nn.Module):
    def __init__(self, c, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight.to(x.dtype)


def sdpa(q, k, v, is_causal=False, attn_mask=None):
    """F.scaled_dot_product_attention, or its definition on a torch without it
    (the smoke test on an old CPU torch; the GPU run uses the fused one)."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, attn_mask=attn_mask)
    s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if is_causal:
        attn_mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
    if attn_mask is not None:
        s = s.masked_fill(~attn_mask, float("-inf"))
    return s.softmax(-1) @ v


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c, self.nh, self.kvh = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.hs = c // self.nh
        self.q_proj = nn.Linear(c, self.nh * self.hs, bias=False)
        self.k_proj = nn.Linear(c, self.kvh * self.hs, bias=False)
        self.v_proj = nn.Linear(c, self.kvh * self.hs, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hs, c, bias=False)

    def forward(self, x, cos, sin, cache=None, pos=0):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hs).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.kvh, self.hs).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.kvh, self.hs).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:  # static cache (B, KVH, S, HS); keys 0..pos+T-1 are valid
            kc, vc = cache
            kc[:, :, pos:pos + T] = k
            vc[:, :, pos:pos + T] = v
            k, v = kc[:, :, :pos + T], vc[:, :, :pos + T]
        rep = self.nh // self.kvh
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        if cache is None or pos == 0:
            y = sdpa(q, k, v, is_causal=True)
        elif T == 1:
            y = sdpa(q, k, v)  # one query sees every cached key
        else:  # a chunk after a prefix: query t sees keys 0..pos+t
            mask = torch.ones(T, pos + T, dtype=torch.bool, device=x.device).tril(pos)
            y = sdpa(q, k, v, attn_mask=mask)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c, i = cfg["hidden_size"], cfg["intermediate_size"]
        self.input_layernorm = RMSNorm(c, cfg["rms_norm_eps"])
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(c, cfg["rms_norm_eps"])
        self.gate_proj = nn.Linear(c, i, bias=False)
        self.up_proj = nn.Linear(c, i, bias=False)
        self.down_proj = nn.Linear(i, c, bias=False)

    def forward(self, x, cos, sin, cache=None, pos=0):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, pos)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, cfg, max_pos):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg["num_hidden_layers"]))
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        hs = cfg["hidden_size"] // cfg["num_attention_heads"]
        inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs))
        ang = torch.outer(torch.arange(max_pos, dtype=torch.float64), inv)
        ang = torch.cat((ang, ang), dim=-1)
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, tokens, targets=None, caches=None, pos=0):
        T = tokens.shape[1]
        x = self.embed_tokens(tokens)
        cos, sin = self.cos[pos:pos + T].to(x.dtype), self.sin[pos:pos + T].to(x.dtype)
        for li, layer in enumerate(self.layers):
            x = layer(x, cos, sin, None if caches is None else caches[li], pos)
        logits = F.linear(self.norm(x), self.embed_tokens.weight)  # tied lm_head
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1), ignore_index=-100)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def bench_train(model, dev, B, T, steps, warmup, compiled):
    V = model.cfg["vocab_size"]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1,
                            **({"fused": True} if dev.type == "cuda" else {}))
    fwd = torch.compile(model) if compiled else model
    tokens = torch.randint(0, V, (B, T), device=dev)
    targets = torch.randint(0, V, (B, T), device=dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = fwd(tokens, targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(warmup):
        step()
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync(dev)
    dt = (time.perf_counter() - t0) / steps
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else 0
    return dict(tokens_per_s=B * T / dt, step_ms=dt * 1e3, peak_bytes=peak, loss=float(loss))


def cached_forward(m, kv, causal, tok, pos):
    """Fixed-shape KV-cache forward of `m` (a Llama): tok (B, T) at the absolute
    positions pos (T,) (an int64 device tensor); kv: per layer (k, v) static
    caches (B, KVH, S, HS), written with index_copy_; attention runs over the
    whole capacity S with a mask from pos (key j is visible to the query at
    position p iff j <= p, causal = tril(ones(S, S))). The shapes do not
    depend on the position, so one compiled graph serves every step. Returns
    the greedy next token (B, 1), argmax on the device."""
    B, T = tok.shape
    x = m.embed_tokens(tok)
    cos, sin = m.cos[pos].to(x.dtype), m.sin[pos].to(x.dtype)  # (T, HS)
    mask = causal[pos].view(1, 1, T, -1)  # (1, 1, T, S)
    for layer, (kc, vc) in zip(m.layers, kv):
        a = layer.self_attn
        h = layer.input_layernorm(x)
        q = a.q_proj(h).view(B, T, a.nh, a.hs).transpose(1, 2)
        k = a.k_proj(h).view(B, T, a.kvh, a.hs).transpose(1, 2)
        v = a.v_proj(h).view(B, T, a.kvh, a.hs).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        kc.index_copy_(2, pos, k)
        vc.index_copy_(2, pos, v)
        k, v = kc, vc
        if a.nh != a.kvh:
            k = k.repeat_interleave(a.nh // a.kvh, dim=1)
            v = v.repeat_interleave(a.nh // a.kvh, dim=1)
        y = sdpa(q, k, v, attn_mask=mask)
        x = x + a.o_proj(y.transpose(1, 2).reshape(B, T, -1))
        h = layer.post_attention_layernorm(x)
        x = x + layer.down_proj(F.silu(layer.gate_proj(h)) * layer.up_proj(h))
    logits = F.linear(m.norm(x[:, -1]), m.embed_tokens.weight)  # (B, V): last position only, tied lm_head
    return logits.argmax(-1, keepdim=True)


@torch.no_grad()
def bench_decode(model, dev, B, prompt, gen, compiled, compile_mode="reduce-overhead"):
    cfg = model.cfg
    hs = cfg["hidden_size"] // cfg["num_attention_heads"]
    S = prompt + gen
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    m = model.to(dtype)
    kv = [(torch.zeros(B, cfg["num_key_value_heads"], S, hs, device=dev, dtype=dtype),
           torch.zeros(B, cfg["num_key_value_heads"], S, hs, device=dev, dtype=dtype))
          for _ in range(cfg["num_hidden_layers"])]
    causal = torch.ones(S, S, dtype=torch.bool, device=dev).tril()
    if compiled and hasattr(torch, "_dynamo") and hasattr(torch._dynamo, "mark_static_address"):
        for kc, vc in kv:  # mutated in place by the graph: fixed addresses for CUDA graphs
            torch._dynamo.mark_static_address(kc)
            torch._dynamo.mark_static_address(vc)
    tokens = torch.randint(0, cfg["vocab_size"], (B, prompt), device=dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def one(tok, pos):
        return cached_forward(m, kv, causal, tok, pos)

    step = torch.compile(one, mode=compile_mode, fullgraph=True) if compiled else one
    mark = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None) if compiled else None
    nxt = one(tokens, torch.arange(prompt, device=dev))  # prefill (eager, not timed)
    pos = torch.full((1,), prompt, dtype=torch.long, device=dev)
    for i in range(5):  # warm-up / compile / CUDA-graph recording; these positions are rewritten below
        if mark:
            mark()
        pos.fill_(prompt + min(i, gen - 1))
        step(nxt, pos).clone()
    pos.fill_(prompt)
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(gen):
        if mark:
            mark()
        nxt = step(nxt, pos).clone()  # clone: a CUDA-graph output is overwritten by the next replay
        pos += 1
    sync(dev)
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else 0
    model.float()
    res = dict(tokens_per_s=B * gen / dt, ms_per_token=dt / gen * 1e3, peak_bytes=peak)
    if compiled:
        res["compile_mode"] = compile_mode
    return res


def torch_op_times(dev, B, T, cfg):
    """The kernel bench's ops in PyTorch (bf16), for the per-kernel table."""
    if dev.type != "cuda":
        return {}
    C, NH, HS, I, V = cfg["hidden_size"], cfg["num_attention_heads"], cfg["hidden_size"] // cfg[
        "num_attention_heads"], cfg["intermediate_size"], cfg["vocab_size"]
    bf = torch.bfloat16

    def t(fn, iters=20):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(iters):
            fn()
        b.record()
        torch.cuda.synchronize()
        return a.elapsed_time(b) / iters

    out = {}
    q = torch.randn(B, NH, T, HS, device=dev, dtype=bf, requires_grad=True)
    k = torch.randn(B, NH, T, HS, device=dev, dtype=bf, requires_grad=True)
    v = torch.randn(B, NH, T, HS, device=dev, dtype=bf, requires_grad=True)
    out["attention_forward"] = t(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    g = torch.randn_like(y)
    out["attention_backward"] = t(lambda: torch.autograd.grad(
        F.scaled_dot_product_attention(q, k, v, is_causal=True), (q, k, v), g)) - out["attention_forward"]
    x = torch.randn(B * T, C, device=dev, dtype=bf)
    norm = RMSNorm(C, 1e-5).to(dev)
    out["rmsnorm_forward"] = t(lambda: norm(x))
    gt, up = torch.randn(B * T, I, device=dev, dtype=bf), torch.randn(B * T, I, device=dev, dtype=bf)
    out["swiglu_forward"] = t(lambda: F.silu(gt) * up)
    logits = torch.randn(B * T, V, device=dev, dtype=bf, requires_grad=True)
    tg = torch.randint(0, V, (B * T,), device=dev)
    out["crossentropy_forward_backward"] = t(lambda: torch.autograd.grad(F.cross_entropy(logits.float(), tg), logits))
    w = torch.randn(I, C, device=dev, dtype=bf)
    out["gemm_bf16 x@W^T (N,768)->(N,2048)"] = t(lambda: F.linear(x, w))
    del logits
    return out


def run_kernel_bench(path, B, T):
    if not path:
        return []
    r = subprocess.run([path, str(B), str(T)], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"kernel bench failed: {r.stderr.strip()}", file=sys.stderr)
        return []
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def run_model_bench(path, args):
    """fw_cuda_model_bench with `args`; its JSON (bench.py's keys), or {}."""
    if not path:
        return {}
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "engine.json")
        cmd = [path] + args + ["--json", out]
        print("engine: " + " ".join(cmd), flush=True)
        r = subprocess.run(cmd, capture_output=True, text=True)
        sys.stdout.write(r.stdout)
        if r.returncode != 0:
            print(f"model bench failed (exit {r.returncode}): {r.stderr.strip()}", file=sys.stderr)
        elif r.stderr.strip():
            print(r.stderr.strip(), file=sys.stderr)
        if not os.path.exists(out):
            return {}
        with open(out) as f:
            return json.load(f)


def gib(b):
    return f"{b / 2**30:.2f} GiB" if b else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile columns")
    ap.add_argument("--kernel-bench", default="", help="path to fw_cuda_kernel_bench")
    ap.add_argument("--model-bench", default="", help="path to fw_cuda_model_bench (fills the engine column)")
    ap.add_argument("--engine-graph", action="store_true",
                    help="also time the engine's decode steps captured in one CUDA graph (fw_cuda_model_bench --graph)")
    ap.add_argument("--decode-compile-mode", default="reduce-overhead",
                    help="torch.compile mode of the decode step (default reduce-overhead: CUDA graphs)")
    ap.add_argument("--tiny", action="store_true", help="a tiny config (smoke test)")
    ap.add_argument("--json", default="", help="also write the results here")
    a = ap.parse_args()

    dev = torch.device(a.device)
    cfg = TINY if a.tiny else CONFIG
    T = min(a.seq, 64) if a.tiny else a.seq
    B = min(a.batch, 2) if a.tiny else a.batch
    torch.manual_seed(0)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    peak, bw = device_peaks(name)
    model = Llama(cfg, max(T, a.prompt + a.gen) + 8)
    n_params = sum(p.numel() for p in model.parameters())
    del model
    L, C = cfg["num_hidden_layers"], cfg["hidden_size"]
    flops_per_token = 6 * n_params + 12 * L * T * C
    steps, warmup = (2, 1) if a.tiny else (a.steps, a.warmup)
    prompt, gen = (min(a.prompt, 8), 4) if a.tiny else (a.prompt, a.gen)
    db64 = 2 if a.tiny else 64

    modes = ["eager"] + ([] if a.no_compile or not hasattr(torch, "compile") else ["compile"])
    res = {"device": name, "params": n_params, "batch": B, "seq": T, "flops_per_token": flops_per_token}

    # The engine first, while this process holds (almost) no GPU memory.
    eng = run_model_bench(a.model_bench, [
        "--config", "tiny" if a.tiny else "124m", "--batch", str(B), "--seq", str(T), "--steps", str(steps),
        "--warmup", str(warmup), "--precision", "bf16", "--decode-batches", f"1,{db64}", "--prompt", str(prompt),
        "--gen", str(gen), "--peak-tflops", str(peak / 1e12 if peak else 0), "--hbm-tbps", str(bw / 1e12 if bw else 0)] + (["--graph"] if a.engine_graph else []))
    if eng:
        if eng.get("params") != n_params:
            print(f"warning: engine model has {eng.get('params')} parameters, torch {n_params}", file=sys.stderr)
        res["engine"] = {k: v for k, v in eng.items() if not k.endswith("_engine") and k != "decode"}
        for key, src in (("train_engine", "train_engine"), ("decode1_engine", "decode1_engine"),
                         ("decode64_engine", f"decode{db64}_engine")):
            if src in eng:
                res[key] = eng[src]
    for mode in modes:
        m = Llama(cfg, max(T, a.prompt + a.gen) + 8).to(dev)
        tr = bench_train(m, dev, B, T, steps, warmup, mode == "compile")
        tr["mfu"] = tr["tokens_per_s"] * flops_per_token / peak if peak else None
        res[f"train_{mode}"] = tr
        for db in (1, 64):
            d = bench_decode(m, dev, db64 if db == 64 else db, prompt, gen, mode == "compile", a.decode_compile_mode)
            if db == 1 and bw:
                # bf16 weights once per token + the KV cache at mid-generation
                hs = C // cfg["num_attention_heads"]
                kv = 2 * L * cfg["num_key_value_heads"] * hs * (prompt + gen / 2) * 2
                d["bound_tokens_per_s"] = bw / (2 * n_params + kv)
                d["fraction_of_bound"] = d["tokens_per_s"] / d["bound_tokens_per_s"]
            res[f"decode{db}_{mode}"] = d
        del m
        if dev.type == "cuda":
            torch.cuda.empty_cache()

    kernels = run_kernel_bench(a.kernel_bench, B, T)
    torch_ops = torch_op_times(dev, B, T, cfg) if kernels else {}
    res["kernels"] = [dict(k, torch_ms=torch_ops.get(k["op"])) for k in kernels]

    print(f"\n# {name}: {n_params / 1e6:.1f}M params, B={B} T={T}, {flops_per_token / 1e9:.2f} GFLOP/token")
    print(f"| {'metric':34} | {'engine':>12} | {'torch eager':>12} | {'torch.compile':>13} |")
    print(f"|{'-' * 36}|{'-' * 14}|{'-' * 14}|{'-' * 15}|")

    have_engine = any(k.endswith("_engine") for k in res)

    def row(label, key, fmt):
        vals = []
        for mode in ["engine"] + modes:
            v = (res.get(f"{key[0]}_{mode}") or {}).get(key[1])
            vals.append(fmt(v) if v is not None else "-")
        vals += ["-"] * (3 - len(vals))
        if not have_engine:
            vals[0] = "n/a"
        print(f"| {label:34} | {vals[0]:>12} | {vals[1]:>12} | {vals[2]:>13} |")

    row("train tokens/s", ("train", "tokens_per_s"), lambda v: f"{v:,.0f}")
    row("train MFU", ("train", "mfu"), lambda v: f"{100 * v:.1f}%")
    row("train peak memory", ("train", "peak_bytes"), gib)
    row("decode tokens/s, batch 1", ("decode1", "tokens_per_s"), lambda v: f"{v:,.0f}")
    row("decode batch 1, share of BW bound", ("decode1", "fraction_of_bound"), lambda v: f"{100 * v:.1f}%")
    if any(k.startswith("graph_") for k in res.get("decode1_engine") or {}):
        # the engine's decode step replayed as one CUDA graph, with programmatic
        # dependent launch (launch.h) as configured and without it
        row("decode tokens/s, batch 1 (CUDA graph)", ("decode1", "graph_tokens_per_s"), lambda v: f"{v:,.0f}")
        row("decode batch 1 (graph), share of bound", ("decode1", "graph_fraction_of_bound"), lambda v: f"{100 * v:.1f}%")
        row("  same, without PDL", ("decode1", "graph_no_pdl_fraction_of_bound"), lambda v: f"{100 * v:.1f}%")
    row("decode tokens/s, batch 64", ("decode64", "tokens_per_s"), lambda v: f"{v:,.0f}")
    row("decode peak memory, batch 64", ("decode64", "peak_bytes"), gib)
    if have_engine:
        print("engine: fw_cuda_model_bench, bf16 (CudaTrainer step with grad-norm clip 1.0, fp32 master + AdamW; greedy "
              "decode on device); its peak memory is cudaMemGetInfo-based (device memory in use, incl. cuBLAS "
              "workspace), torch's is max_memory_allocated.")
    else:
        print("engine: n/a = no --model-bench given (fw_cuda_model_bench); per-kernel times below.")
    if res["kernels"]:
        print(f"\n| {'kernel':40} | {'shape':22} | {'engine ms':>10} | {'torch ms':>10} |")
        print(f"|{'-' * 42}|{'-' * 24}|{'-' * 12}|{'-' * 12}|")
        for k in res["kernels"]:
            tm = f"{k['torch_ms']:.4f}" if k.get("torch_ms") is not None else "-"
            print(f"| {k['op']:40} | {k['shape']:22} | {k['ms']:>10.4f} | {tm:>10} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
