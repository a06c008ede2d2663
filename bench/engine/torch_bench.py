#!/usr/bin/env python3
"""Time a training step of the plain-PyTorch reference Llama (one JSON line out).

Usage: torch_bench.py DIM LAYERS HEADS KV_HEADS HIDDEN VOCAB B T STEPS WARMUP THREADS
Same model as the engine (native/tests/ref/llama_ref.py forward, tied
embeddings), AdamW, fp32,
random weights and tokens, clipping at 1.0 like the engine's default.
step_ms: median wall time over STEPS timed steps; cpu_ms: process CPU time per
timed step; peak_rss_mb: this process's maximum resident set.
"""
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "native", "tests", "ref"))
import llama_ref  # noqa: E402


def main():
    dim, layers, heads, kvh, hidden, vocab, B, T, steps, warmup, threads = map(int, sys.argv[1:12])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    cfg = {"vocab_size": vocab, "hidden_size": dim, "num_hidden_layers": layers, "num_attention_heads": heads,
           "num_key_value_heads": kvh, "intermediate_size": hidden, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "tie_word_embeddings": True}
    d = llama_ref.Dims(cfg)
    hs = dim // heads
    shapes = {"model.embed_tokens.weight": (vocab, dim), "model.norm.weight": (dim,)}  # tied lm_head
    for l in range(layers):
        p = f"model.layers.{l}."
        shapes.update({p + "input_layernorm.weight": (dim,), p + "post_attention_layernorm.weight": (dim,),
                       p + "self_attn.q_proj.weight": (heads * hs, dim), p + "self_attn.k_proj.weight": (kvh * hs, dim),
                       p + "self_attn.v_proj.weight": (kvh * hs, dim), p + "self_attn.o_proj.weight": (dim, heads * hs),
                       p + "mlp.gate_proj.weight": (hidden, dim), p + "mlp.up_proj.weight": (hidden, dim),
                       p + "mlp.down_proj.weight": (dim, hidden)})
    params = {}
    for k, s in shapes.items():
        params[k] = (torch.ones(s) if "norm" in k else torch.randn(s) * 0.02).requires_grad_(True)
    decay = [v for k, v in params.items() if "norm" not in k]
    nodecay = [v for k, v in params.items() if "norm" in k]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    tok = torch.randint(0, vocab, (B, T))
    tgt = torch.randint(0, vocab, (B, T))
    times = []
    cpu0 = 0.0
    for s in range(warmup + steps):
        if s == warmup:
            cpu0 = time.process_time()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = llama_ref.forward(params, d, tok)
        loss = F.cross_entropy(logits.view(-1, vocab), tgt.view(-1), ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        opt.step()
        dt = (time.perf_counter() - t0) * 1000
        if s >= warmup:
            times.append(dt)
    cpu_ms = (time.process_time() - cpu0) * 1000 / steps
    times.sort()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"impl": "pytorch", "step_ms": round(times[len(times) // 2], 1), "cpu_ms": round(cpu_ms, 1), "peak_rss_mb": round(rss, 1),
                      "params": sum(v.numel() for v in params.values()), "loss": round(float(loss), 4),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
