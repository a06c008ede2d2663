#!/usr/bin/env bash
# train.sh: training-step time and peak memory, flywheel engine vs the
# plain-PyTorch reference Llama (native/tests/ref/llama_ref.py), same model,
# batch, sequence length and thread count, random weights and tokens.
#
#   bench/engine/train.sh                 # THREADS=1 B=4 T=256 STEPS=2 REPEAT=3
#   THREADS=2 CONFIGS=15m bench/engine/train.sh
#
# A training step = forward + backward + global-norm clip + AdamW. Each
# implementation runs REPEAT times as separate processes, interleaved, and the
# best (lowest) median step time of each is reported (the run least disturbed
# by other load on a shared machine); peak RSS is the process maximum
# (parameters, gradients, optimizer moments, activations, allocator).
# "flywheel-recompute" is the engine with activation recomputation on.
# Configs: llama2.c "stories15M" shape (dim 288, 6 layers, 6 heads, hidden 768,
# vocab 32000; 15.2M parameters) and "stories110M" shape (dim 768, 12 layers,
# 12 heads, hidden 2048, vocab 32000; 109.5M parameters), tied embeddings.
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${THREADS:-1}
B=${B:-4}
T=${T:-256}
STEPS=${STEPS:-2}
WARMUP=${WARMUP:-1}
REPEAT=${REPEAT:-3}
CONFIGS=${CONFIGS:-"15m 110m"}
PY=${FW_REF_PYTHON:-/usr/bin/python3}
OUT=bench/out
mkdir -p "$OUT"

cmake -S native -B native/build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release >"$OUT/train-build.log" 2>&1 &&
  cmake --build native/build-bench --target fw_engine >>"$OUT/train-build.log" 2>&1 ||
  { cat "$OUT/train-build.log"; echo "train.sh: engine build failed" >&2; exit 1; }
OPENBLAS_INC=$(dirname "$(find /usr/include -name cblas.h | head -1)")
g++ -std=c++17 -O3 -march=x86-64-v2 -mtune=native -fopenmp -Inative/engine -I"$OPENBLAS_INC" \
  bench/engine/train_bench.cpp native/build-bench/libfw_engine.a -lopenblas -o "$OUT/train_bench"

dims() {
  case "$1" in
    15m) echo "288 6 6 6 768 32000" ;;
    110m) echo "768 12 12 12 2048 32000" ;;
    *) echo "unknown config $1" >&2; exit 2 ;;
  esac
}

export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc --all) cores, load $(cut -d' ' -f1-3 /proc/loadavg), B=$B T=$T threads=$THREADS"
printf '| config | impl | step ms (best of %s) | cpu ms/step | peak RSS MB | speed vs pytorch | RSS vs pytorch |\n' "$REPEAT"
printf '| --- | --- | --- | --- | --- | --- | --- |\n'
for name in $CONFIGS; do
  d=$(dims "$name")
  runs=()
  for ((r = 0; r < REPEAT; r++)); do
    # shellcheck disable=SC2086
    runs+=("$("$PY" bench/engine/torch_bench.py $d "$B" "$T" "$STEPS" "$WARMUP" "$THREADS")")
    # shellcheck disable=SC2086
    runs+=("$("$OUT/train_bench" $d "$B" "$T" "$STEPS" "$WARMUP" 0)")
    # shellcheck disable=SC2086
    runs+=("$("$OUT/train_bench" $d "$B" "$T" "$STEPS" "$WARMUP" 1)")
  done
  printf '%s\n' "${runs[@]}" >"$OUT/train-$name-t$THREADS.jsonl"
  "$PY" - "$name" "${runs[@]}" <<'PYEOF'
import json, sys
name = sys.argv[1]
best = {}
for line in sys.argv[2:]:
    j = json.loads(line)
    b = best.get(j["impl"])
    if b is None or j["step_ms"] < b["step_ms"]:
        best[j["impl"]] = j
ref = best["pytorch"]
for impl in ("pytorch", "flywheel", "flywheel-recompute"):
    j = best[impl]
    speed = ref["step_ms"] / j["step_ms"]
    rss = j["peak_rss_mb"] / ref["peak_rss_mb"]
    print(f"| {name} ({j['params'] / 1e6:.1f}M) | {impl} | {j['step_ms']:.0f} | {j['cpu_ms']:.0f} | "
          f"{j['peak_rss_mb']:.0f} | {speed:.2f}x | {rss:.2f}x |", flush=True)
PYEOF
done
