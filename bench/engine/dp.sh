#!/usr/bin/env bash
# dp.sh: data-parallel training-step time, 2 ranks against 1 rank at the same
# per-rank batch, one thread per rank, and the share of the 2-rank step spent
# in the gradient all-reduce (Gloo over loopback TCP, 25 MB buckets).
#
#   bench/engine/dp.sh                       # B=4 T=256 STEPS=3 REPEAT=2, both configs
#   CONFIGS=15m REPEAT=3 bench/engine/dp.sh
#
# A step = forward + backward + all-reduce (target count, gradients, loss) +
# clip + AdamW. 1 rank runs in one process without a collective; 2 ranks run
# as two processes joined through an in-process rendezvous store (dp_bench.cpp).
# Runs alternate 1 rank / 2 ranks REPEAT times; the best (lowest) median step
# time of each is reported. On a machine with N cores, 2 ranks at one thread
# each should take about the 1-rank step time plus the all-reduce: the
# "scaling" column is 2 x (1-rank step) / (2-rank step), the throughput gain.
# Configs as train.sh: "15m" (dim 288, 6 layers, 6 heads, vocab 32000) and
# "110m" (dim 768, 12 layers, 12 heads, vocab 32000), tied embeddings.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-4}
T=${T:-256}
STEPS=${STEPS:-3}
WARMUP=${WARMUP:-1}
REPEAT=${REPEAT:-2}
CONFIGS=${CONFIGS:-"15m 110m"}
NATIVE=${NATIVE:-native}
PY=${FW_REF_PYTHON:-/usr/bin/python3}
OUT=bench/out
mkdir -p "$OUT"

cmake -S "$NATIVE" -B "$NATIVE/build-bench" -G Ninja -DCMAKE_BUILD_TYPE=Release >"$OUT/dp-build.log" 2>&1 &&
  cmake --build "$NATIVE/build-bench" --target fw_engine >>"$OUT/dp-build.log" 2>&1 ||
  { cat "$OUT/dp-build.log"; echo "dp.sh: engine build failed" >&2; exit 1; }
grep -q "Gloo collectives enabled" "$OUT/dp-build.log" ||
  grep -q "FW_HAVE_GLOO" "$NATIVE/build-bench/build.ninja" ||
  { echo "dp.sh: the engine was built without Gloo (install libgloo-dev)" >&2; exit 1; }
OPENBLAS_INC=$(dirname "$(find /usr/include -name cblas.h | head -1)")
g++ -std=c++17 -O3 -march=x86-64-v2 -mtune=native -fopenmp -DFW_HAVE_GLOO -I"$NATIVE/engine" -I"$OPENBLAS_INC" \
  bench/engine/dp_bench.cpp "$NATIVE/build-bench/libfw_engine.a" -lopenblas -lgloo -o "$OUT/dp_bench"

dims() {
  case "$1" in
    15m) echo "288 6 6 6 768 32000" ;;
    110m) echo "768 12 12 12 2048 32000" ;;
    *) echo "unknown config $1" >&2; exit 2 ;;
  esac
}

export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc --all) cores, load $(cut -d' ' -f1-3 /proc/loadavg), per-rank B=$B T=$T, 1 thread per rank"
printf '| config | 1 rank step ms | 2 ranks step ms | scaling (ideal 2.00x) | all-reduce ms/step | all-reduce share of step | grads MB |\n'
printf '| --- | --- | --- | --- | --- | --- | --- |\n'
for name in $CONFIGS; do
  d=$(dims "$name")
  runs=()
  for ((r = 0; r < REPEAT; r++)); do
    # shellcheck disable=SC2086
    runs+=("$("$OUT/dp_bench" $d "$B" "$T" "$STEPS" "$WARMUP" 1)")
    # shellcheck disable=SC2086
    runs+=("$("$OUT/dp_bench" $d "$B" "$T" "$STEPS" "$WARMUP" 2)")
  done
  printf '%s\n' "${runs[@]}" >"$OUT/dp-$name.jsonl"
  "$PY" - "$name" "${runs[@]}" <<'PYEOF'
import json, sys
name = sys.argv[1]
best = {}
for line in sys.argv[2:]:
    j = json.loads(line)
    b = best.get(j["world"])
    if b is None or j["step_ms"] < b["step_ms"]:
        best[j["world"]] = j
one, two = best[1], best[2]
print(f"| {name} ({one['params'] / 1e6:.1f}M) | {one['step_ms']:.0f} | {two['step_ms']:.0f} | "
      f"{2 * one['step_ms'] / two['step_ms']:.2f}x | {two['allreduce_ms']:.0f} | "
      f"{100 * two['allreduce_share']:.1f}% | {two['grad_mb']:.0f} |", flush=True)
PYEOF
done
