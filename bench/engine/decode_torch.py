"""decode_torch.py: the plain-PyTorch reference for decode_bench.cpp.

An equivalent Llama decoder (RMSNorm, RoPE rotate_half, GQA, SwiGLU) with a
KV cache written in eager PyTorch, random weights, a prompt of random tokens,
then greedy decode of one token at a time. Prints one JSON line like the C++
benchmark: decode tokens/s, prefill excluded.

usage: decode_torch.py config.json prompt_tokens decode_tokens threads [model_dir]

With model_dir (a HF folder with an F32 model.safetensors, e.g. written by
decode_bench), the weights are read from it instead of drawn at random, so the
greedy tokens can be compared with the engine's: each step is then fed a fixed
token and its argmax is reported, as decode_bench does.
"""
import json
import struct
import sys
import time

import torch


def load_safetensors(path):
    """F32 tensors of a safetensors file by name (the format is 8 + JSON + data)."""
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", f"{name}: only F32 is read here"
        b, e = t["data_offsets"]
        out[name] = torch.frombuffer(bytearray(blob[8 + n + b:8 + n + e]), dtype=torch.float32).view(t["shape"])
    return out


def main():
    cfg = json.load(open(sys.argv[1]))
    P, D, threads = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    C, L, NH = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
    KVH = cfg.get("num_key_value_heads", NH)
    HS, I, V = C // NH, cfg["intermediate_size"], cfg["vocab_size"]
    eps, theta = cfg.get("rms_norm_eps", 1e-6), cfg.get("rope_theta", 10000.0)
    S = P + D

    def w(*shape):
        return torch.randn(*shape) * 0.02

    if len(sys.argv) > 5:
        st = load_safetensors(sys.argv[5] + "/model.safetensors")
        emb, norm = st["model.embed_tokens.weight"], st["model.norm.weight"]
        lm_head = emb if cfg.get("tie_word_embeddings") else st["lm_head.weight"]
        names = dict(ln1="input_layernorm", wq="self_attn.q_proj", wk="self_attn.k_proj", wv="self_attn.v_proj",
                     wo="self_attn.o_proj", ln2="post_attention_layernorm", wg="mlp.gate_proj", wu="mlp.up_proj",
                     wd="mlp.down_proj")
        layers = [{k: st[f"model.layers.{l}.{v}.weight"] for k, v in names.items()} for l in range(L)]
    else:
        emb, lm_head, norm = w(V, C), w(V, C), torch.ones(C)
        layers = [dict(ln1=torch.ones(C), wq=w(NH * HS, C), wk=w(KVH * HS, C), wv=w(KVH * HS, C), wo=w(C, NH * HS),
                       ln2=torch.ones(C), wg=w(I, C), wu=w(I, C), wd=w(C, I)) for _ in range(L)]
    inv = 1.0 / theta ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS)
    ang = torch.arange(S, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = torch.cos(ang).float(), torch.sin(ang).float()
    kc = torch.zeros(L, KVH, S, HS)
    vc = torch.zeros(L, KVH, S, HS)

    def rms(x, wt):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * wt

    def rope(x, p0):  # x (T, H, HS)
        T = x.shape[0]
        c, s = cos[p0:p0 + T, None, :], sin[p0:p0 + T, None, :]
        a, b = x[..., :HS // 2], x[..., HS // 2:]
        return torch.cat([a * c - b * s, b * c + a * s], dim=-1)

    def forward(tokens, p0):  # tokens (T,) -> logits of the last position (V,)
        T = tokens.shape[0]
        x = emb[tokens]
        for l, p in enumerate(layers):
            h = rms(x, p["ln1"])
            q = rope((h @ p["wq"].T).view(T, NH, HS), p0)
            k = rope((h @ p["wk"].T).view(T, KVH, HS), p0)
            v = (h @ p["wv"].T).view(T, KVH, HS)
            kc[l, :, p0:p0 + T] = k.transpose(0, 1)
            vc[l, :, p0:p0 + T] = v.transpose(0, 1)
            keys = kc[l, :, :p0 + T].repeat_interleave(NH // KVH, dim=0)  # (NH, P, HS)
            vals = vc[l, :, :p0 + T].repeat_interleave(NH // KVH, dim=0)
            att = (q.transpose(0, 1) @ keys.transpose(1, 2)) / HS ** 0.5  # (NH, T, P)
            mask = torch.arange(p0 + T)[None, :] > (p0 + torch.arange(T))[:, None]
            att = att.masked_fill(mask, float("-inf")).softmax(-1)
            o = (att @ vals).transpose(0, 1).reshape(T, NH * HS)
            x = x + o @ p["wo"].T
            h = rms(x, p["ln2"])
            x = x + (torch.nn.functional.silu(h @ p["wg"].T) * (h @ p["wu"].T)) @ p["wd"].T
        return rms(x[-1], norm) @ lm_head.T

    with torch.inference_mode():
        prompt = torch.tensor([(i * 7919 + 13) % V for i in range(P)])
        tok = int(forward(prompt, 0).argmax())
        out = [tok]
        t0 = time.perf_counter()
        for i in range(D):
            tok = int(forward(torch.tensor([tok]), P + i).argmax())
            out.append(tok)
            if len(sys.argv) > 5:
                tok = ((P + i) * 7919 + 13) % V  # forced input
        dt = time.perf_counter() - t0
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "decode_tokens": D, "seconds": round(dt, 4),
                      "tokens_per_s": round(D / dt, 2), "tokens": out[:32]}))


if __name__ == "__main__":
    main()
