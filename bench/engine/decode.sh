#!/usr/bin/env bash
# decode.sh: single-stream KV-cached decode tokens/s, flywheel engine (fp32 and
# int8 weights) side by side with an eager PyTorch decode loop, same threads.
#
#   bench/engine/decode.sh            # THREADS=1 PROMPT=16 DECODE=64 REPEAT=3 by default
#   THREADS=2 DECODE=256 bench/engine/decode.sh
#
# Each implementation runs REPEAT times, interleaved with the others, and the
# best tokens/s of each is reported: on a shared machine the best run is the
# one least disturbed by other load.
# Builds the engine into native/build-bench (Release) and the benchmark binary
# into bench/out/. Configs: llama2.c "stories15M" shape (dim 288, 6 layers,
# 6 heads, vocab 32000) and "stories110M" shape (dim 768, 12 layers, 12 heads,
# vocab 32000, ~110M parameters with the untied lm_head). Random weights.
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${THREADS:-1}
PROMPT=${PROMPT:-16}
DECODE=${DECODE:-64}
REPEAT=${REPEAT:-3}
PY=${FW_REF_PYTHON:-/usr/bin/python3}
OUT=bench/out
mkdir -p "$OUT"

cmake -S native -B native/build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release >"$OUT/decode-build.log" 2>&1 &&
  cmake --build native/build-bench --target fw_engine >>"$OUT/decode-build.log" 2>&1 ||
  { cat "$OUT/decode-build.log"; echo "decode.sh: engine build failed" >&2; exit 1; }
OPENBLAS_INC=$(dirname "$(find /usr/include -name cblas.h | head -1)")
g++ -std=c++17 -O3 -march=x86-64-v2 -mtune=native -fopenmp -Inative/engine -I"$OPENBLAS_INC" \
  bench/engine/decode_bench.cpp native/build-bench/libfw_engine.a -lopenblas -o "$OUT/decode_bench"

cat >"$OUT/decode-15m.json" <<'JSON'
{"model_type":"llama","vocab_size":32000,"hidden_size":288,"intermediate_size":768,"num_hidden_layers":6,
 "num_attention_heads":6,"num_key_value_heads":6,"max_position_embeddings":1024,"rms_norm_eps":1e-5}
JSON
cat >"$OUT/decode-110m.json" <<'JSON'
{"model_type":"llama","vocab_size":32000,"hidden_size":768,"intermediate_size":2048,"num_hidden_layers":12,
 "num_attention_heads":12,"num_key_value_heads":12,"max_position_embeddings":1024,"rms_norm_eps":1e-5}
JSON

export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

# reference check: on the same weights both loops must pick the same greedy tokens
rm -rf "$OUT/decode-15m-model"
ours=$("$OUT/decode_bench" "$OUT/decode-15m.json" "$PROMPT" 31 0 "$OUT/decode-15m-model")
theirs=$("$PY" bench/engine/decode_torch.py "$OUT/decode-15m.json" "$PROMPT" 31 "$THREADS" "$OUT/decode-15m-model")
"$PY" - "$ours" "$theirs" <<'PYEOF'
import json, sys
a, b = (json.loads(x)["tokens"] for x in sys.argv[1:])
if a != b:
    sys.exit(f"decode.sh: the engine and the PyTorch reference disagree on the same weights:\n{a}\n{b}")
print(f"reference check: engine and PyTorch pick the same {len(a)} greedy tokens on the same weights\n")
PYEOF
printf '| config | threads | pytorch tok/s | flywheel fp32 tok/s | ratio | flywheel int8 tok/s | ratio |\n'
printf '| --- | --- | --- | --- | --- | --- | --- |\n'
for name in 15m 110m; do
  cfg="$OUT/decode-$name.json"
  runs=()
  for ((r = 0; r < REPEAT; r++)); do
    runs+=("$("$PY" bench/engine/decode_torch.py "$cfg" "$PROMPT" "$DECODE" "$THREADS")")
    runs+=("$("$OUT/decode_bench" "$cfg" "$PROMPT" "$DECODE" 0)")
    runs+=("$("$OUT/decode_bench" "$cfg" "$PROMPT" "$DECODE" 1)")
  done
  "$PY" - "$name" "$THREADS" "${runs[@]}" <<'PYEOF'
import json, sys
name, threads = sys.argv[1], sys.argv[2]
best = {}
for line in sys.argv[3:]:
    j = json.loads(line)
    best[j["impl"]] = max(best.get(j["impl"], 0.0), j["tokens_per_s"])
r, a, b = best["pytorch"], best["flywheel"], best["flywheel-int8"]
print(f"| {name} | {threads} | {r:.1f} | {a:.1f} | {a / r:.2f}x | {b:.1f} | {b / r:.2f}x |", flush=True)
PYEOF
done
