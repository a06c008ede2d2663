#!/usr/bin/env python3
"""Plain-PyTorch reference of the engine's Llama model, for parity tests.

Written with elementary torch ops only (no transformers), following the
Hugging Face Llama/Qwen2 definitions: pre-norm RMSNorm, rotate_half RoPE,
grouped-query causal attention, SwiGLU MLP, optional q/k/v(/o) biases, tied or
untied LM head, cross-entropy with ignore_index=-100, LoRA (scale alpha/r,
no dropout) and distillation ((1-a) CE + a T^2 KL(teacher || student)).

Usage: llama_ref.py [--device cpu|cuda] IN_PREFIX OUT_PREFIX
  IN_PREFIX.json/.bin: the bundle the C++ test wrote (weights, batch, options)
  OUT_PREFIX.json/.bin: logits, loss and a gradient for every trainable tensor
  --device cuda: the same computation on the GPU, in true fp32 (TF32 off for
  matmuls and cuDNN), for the CUDA backend's parity test
  (native/tests/cuda/cuda_ref_test.cpp); default cpu

A bundle is a JSON index {"meta": {...}, "tensors": {name: {"shape": [...],
"offset": element offset}}} plus a raw little-endian float32 .bin file.
Also importable (bench/engine/bench.py builds its PyTorch side from it).
"""
import argparse
import json
import math

import numpy as np
import torch
import torch.nn.functional as F

IGNORE = -100
LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def read_bundle(prefix):
    with open(prefix + ".json") as f:
        index = json.load(f)
    flat = np.fromfile(prefix + ".bin", dtype="<f4")
    tensors = {}
    for name, t in index["tensors"].items():
        n = int(np.prod(t["shape"])) if t["shape"] else 1
        tensors[name] = torch.from_numpy(flat[t["offset"]:t["offset"] + n].copy()).reshape(t["shape"])
    return index["meta"], tensors


def write_bundle(prefix, meta, tensors):
    index, chunks, off = {}, [], 0
    for name, t in tensors.items():
        a = t.detach().to(torch.float32).cpu().contiguous().numpy().reshape(-1)
        index[name] = {"shape": list(t.shape), "offset": off}
        chunks.append(a)
        off += a.size
    np.concatenate(chunks).astype("<f4").tofile(prefix + ".bin")
    with open(prefix + ".json", "w") as f:
        json.dump({"meta": meta, "tensors": index}, f)


class Dims:
    def __init__(self, cfg):
        self.V = cfg["vocab_size"]
        self.C = cfg["hidden_size"]
        self.L = cfg["num_hidden_layers"]
        self.NH = cfg["num_attention_heads"]
        self.KVH = cfg.get("num_key_value_heads") or self.NH
        self.HS = cfg.get("head_dim") or self.C // self.NH
        self.theta = cfg.get("rope_theta", 10000.0)
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.tied = cfg.get("tie_word_embeddings", False)


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_cos_sin(T, HS, theta, device="cpu"):
    inv_freq = 1.0 / (theta ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS))
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, HS)
    return emb.cos().float().to(device), emb.sin().float().to(device)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def linear(x, p, name, lora, layer_prefix):
    """x W^T (+ b) (+ scale * x A^T B^T) for the HF module `name`."""
    y = x @ p[name + ".weight"].t()
    if name + ".bias" in p:
        y = y + p[name + ".bias"]
    if lora is not None:
        a = lora["params"].get("base_model.model." + name + ".lora_A.weight")
        if a is not None:
            b = lora["params"]["base_model.model." + name + ".lora_B.weight"]
            y = y + lora["scale"] * ((x @ a.t()) @ b.t())
    return y


def forward(p, d, tokens, lora=None):
    """tokens (B, T) int64 -> logits (B, T, V)."""
    B, T = tokens.shape
    x = p["model.embed_tokens.weight"][tokens]  # (B, T, C)
    cos, sin = rope_cos_sin(T, d.HS, d.theta, tokens.device)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=tokens.device), diagonal=1)
    G = d.NH // d.KVH
    for l in range(d.L):
        pre = f"model.layers.{l}."
        h = rmsnorm(x, p[pre + "input_layernorm.weight"], d.eps)
        q = linear(h, p, pre + "self_attn.q_proj", lora, pre).view(B, T, d.NH, d.HS).transpose(1, 2)
        k = linear(h, p, pre + "self_attn.k_proj", lora, pre).view(B, T, d.KVH, d.HS).transpose(1, 2)
        v = linear(h, p, pre + "self_attn.v_proj", lora, pre).view(B, T, d.KVH, d.HS).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(G, dim=1)  # (B, NH, T, HS): head h reads kv head h // G
        v = v.repeat_interleave(G, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d.HS)
        att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, d.NH * d.HS)
        x = x + linear(y, p, pre + "self_attn.o_proj", lora, pre)
        h = rmsnorm(x, p[pre + "post_attention_layernorm.weight"], d.eps)
        g = linear(h, p, pre + "mlp.gate_proj", lora, pre)
        u = linear(h, p, pre + "mlp.up_proj", lora, pre)
        x = x + linear(F.silu(g) * u, p, pre + "mlp.down_proj", lora, pre)
    x = rmsnorm(x, p["model.norm.weight"], d.eps)
    w = p["model.embed_tokens.weight"] if d.tied else p["lm_head.weight"]
    return x @ w.t()


def main(inp, out, device="cpu"):
    torch.set_num_threads(1)
    dev = torch.device(device)
    if dev.type == "cuda":
        # True fp32 products: the parity bound is 1e-4, which TF32 (10-bit
        # mantissa) would not meet.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    meta, t = read_bundle(inp)
    t = {k: v.to(dev) for k, v in t.items()}
    d = Dims(meta["config"])
    B, T = meta["B"], meta["T"]
    tokens = torch.tensor(meta["tokens"], dtype=torch.int64, device=dev).view(B, T)
    targets = torch.tensor(meta["targets"], dtype=torch.int64, device=dev).view(B, T)
    params = {k: v for k, v in t.items() if k.startswith("model.") or k == "lm_head.weight"}
    lora = None
    if meta.get("lora"):
        lp = {k: v for k, v in t.items() if k.startswith("base_model.")}
        lora = {"params": lp, "scale": meta["lora"]["alpha"] / meta["lora"]["rank"]}
        trainable = lp
    else:
        trainable = params
    for v in trainable.values():
        v.requires_grad_(True)
    logits = forward(params, d, tokens, lora)
    V = d.V
    if meta.get("distill"):
        dm = meta["distill"]
        tp = {k[len("teacher."):]: v for k, v in t.items() if k.startswith("teacher.")}
        with torch.no_grad():
            tlogits = forward(tp, Dims(dm["teacher_config"]), tokens)
        a, temp = dm["alpha"], dm["temperature"]
        keep = (targets != IGNORE).view(-1)
        n = max(int(keep.sum()), 1)
        ce = F.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=IGNORE, reduction="sum") / n
        ls = F.log_softmax(logits.view(-1, V) / temp, dim=-1)
        lt = F.log_softmax(tlogits.view(-1, V) / temp, dim=-1)
        kl = ((lt.exp() * (lt - ls)).sum(-1) * keep).sum() / n
        loss = (1 - a) * ce + a * temp * temp * kl
    else:
        loss = F.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=IGNORE)
    loss.backward()
    res = {"logits": logits, "loss": loss.reshape(1)}
    for k, v in trainable.items():
        res["grad." + k] = v.grad
    write_bundle(out, {}, res)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="plain-PyTorch Llama reference (see the module docstring)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("inp", help="input bundle prefix")
    ap.add_argument("out", help="output bundle prefix")
    a = ap.parse_args()
    main(a.inp, a.out, a.device)
