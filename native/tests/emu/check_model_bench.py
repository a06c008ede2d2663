#!/usr/bin/env python3
"""Runs fw_cuda_model_bench on the emulated CUDA backend (tests/emu/backend.cmake)
on its tiny config, bf16 and fp16, and checks what it reports apart from
the timings (meaningless on the emulator): training ran its steps with
finite losses, no step skipped, a profile that accounts for the ops; decode
at batch 1 and 2 produced in-range tokens, the CUDA-graph replay gave the
plain loop's last tokens, and both profiles list their ops. So the
benchmark that run_gpu_checks.sh ends with runs through on a machine
without a GPU. Exit 1 with the reasons on a failure.

Usage: check_model_bench.py <fw_cuda_model_bench_emu>
"""
import json
import math
import os
import subprocess
import sys
import tempfile

ARGS = ["--config", "tiny", "--batch", "2", "--seq", "32", "--steps", "2", "--warmup", "1", "--decode-batches", "1,2",
        "--prompt", "8", "--gen", "4", "--graph", "--profile", "1"]


def check(bench, precision, problems):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "bench.json")
        p = subprocess.run([bench] + ARGS + ["--precision", precision, "--json", out], capture_output=True, text=True,
                           timeout=600)
        if p.returncode != 0:
            problems.append("%s: exit %d\n%s" % (precision, p.returncode, p.stderr[-4000:]))
            return
        r = json.load(open(out))

    def need(cond, what):
        if not cond:
            problems.append("%s: %s" % (precision, what))

    t = r.get("train_engine", {})
    need(t.get("tokens_per_s", 0) > 0, "no training throughput")
    for k in ("first_loss", "loss", "grad_norm"):
        need(isinstance(t.get(k), (int, float)) and math.isfinite(t[k]) and t[k] > 0, "training %s is %r" % (k, t.get(k)))
    need(t.get("skipped_steps") == 0, "skipped %r steps" % t.get("skipped_steps"))
    ops = [o.get("op") for o in t.get("profile", {}).get("ops", [])]
    for op in ("attention", "attention bwd", "adamw", "cross-entropy", "gemm q/k/v", "gemm lm_head bwd"):
        need(op in ops, "the training profile lacks %r (has %s)" % (op, ops))
    dec = {d.get("batch"): d for d in r.get("decode", [])}
    need(sorted(dec) == [1, 2], "decode batches %s, expected [1, 2]" % sorted(dec))
    for b, d in dec.items():
        need(d.get("bad_ids") == 0, "decode batch %d: %r out-of-range ids" % (b, d.get("bad_ids")))
        need(d.get("graph_last_token_mismatches") == 0,
             "decode batch %d: the CUDA graph's last tokens differ from the plain loop's in %r rows"
             % (b, d.get("graph_last_token_mismatches")))
        for k in ("tokens_per_s", "graph_tokens_per_s", "graph_no_pdl_tokens_per_s", "prefill_tokens_per_s"):
            need(d.get(k, 0) > 0, "decode batch %d: no %s" % (b, k))
        need(len(d.get("first_sequence", "").split()) > 0, "decode batch %d: no generated tokens" % b)
        dops = [o.get("op") for o in d.get("profile", {}).get("ops", [])]
        for op in ("decode q/k/v", "decode attention", "decode final norm + lm_head"):
            need(op in dops, "decode batch %d: the profile lacks %r (has %s)" % (b, op, dops))


def main():
    bench = sys.argv[1]
    problems = []
    for precision in ("bf16", "fp16"):
        check(bench, precision, problems)
    if problems:
        print("check_model_bench: %d problem(s)" % len(problems))
        for p in problems:
            print("  " + p)
        sys.exit(1)
    print("check_model_bench: bf16 and fp16 ran training, decode, graph replay and both profiles")


if __name__ == "__main__":
    main()
