#!/usr/bin/env bash
# decode.sh: single-stream KV-cached decode tokens/s, flywheel engine (fp32 and
# int8 weights) side by side with an eager PyTorch decode loop, same threads.
#
#   bench/engine/decode.sh            # THREADS=1 PROMPT=16 DECODE=128 by default
#   THREADS=2 DECODE=256 bench/engine/decode.sh
#
# Builds the engine into native/build-bench (Release) and the benchmark binary
# into bench/out/. Configs: llama2.c "stories15M" shape (dim 288, 6 layers,
# 6 heads, vocab 32000) and "stories110M" shape (dim 768, 12 layers, 12 heads,
# vocab 32000, ~110M parameters with the untied lm_head). Random weights.
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${THREADS:-1}
PROMPT=${PROMPT:-16}
DECODE=${DECODE:-128}
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
printf '| config | threads | pytorch tok/s | flywheel fp32 tok/s | ratio | flywheel int8 tok/s | ratio |\n'
printf '| --- | --- | --- | --- | --- | --- | --- |\n'
for name in 15m 110m; do
  cfg="$OUT/decode-$name.json"
  ref=$("$PY" bench/engine/decode_torch.py "$cfg" "$PROMPT" "$DECODE" "$THREADS")
  f32=$("$OUT/decode_bench" "$cfg" "$PROMPT" "$DECODE" 0)
  i8=$("$OUT/decode_bench" "$cfg" "$PROMPT" "$DECODE" 1)
  "$PY" - "$name" "$THREADS" "$ref" "$f32" "$i8" <<'PYEOF'
import json, sys
name, threads, ref, f32, i8 = sys.argv[1], sys.argv[2], *[json.loads(a) for a in sys.argv[3:]]
r, a, b = ref["tokens_per_s"], f32["tokens_per_s"], i8["tokens_per_s"]
print(f"| {name} | {threads} | {r:.1f} | {a:.1f} | {a / r:.2f}x | {b:.1f} | {b / r:.2f}x |")
PYEOF
done
