#!/usr/bin/env bash
# run_gpu_checks.sh: everything about the CUDA backend that needs a GPU, in one
# command, on a machine with an NVIDIA GPU, the CUDA toolkit and PyTorch:
#
#   native/cuda/run_gpu_checks.sh [build-dir]      (default native/build-cuda)
#
#  1. configure native/ with CUDA (cuBLAS from the toolkit, or from the
#     nvidia-cublas pip wheel that comes with PyTorch), build the GPU tests
#     and the kernel benchmark;
#  2. run the parity tests (every op vs the CPU backend, fp32 and bf16;
#     attention fwd/bwd; KV-cache decode vs full forward; cuBLAS; NCCL;
#     the model and trainer; fw_worker with "device": "cuda" end to end);
#  3. compute-sanitizer memcheck and racecheck on the same tiny shapes;
#  4. the benchmark: PyTorch eager and torch.compile side by side for the
#     124M Llama-style config at seq 1024, plus per-kernel engine times,
#     then the engine's training step and decode step broken down per op
#     (--profile), and, where Nsight Systems is installed, the decode
#     graph's kernels.
# Logs go to $FW_GPU_LOGS (default <build-dir>/gpu-checks); with $OUT set
# (the device tool's return folder) they are also packed into
# $OUT/gpu-checks-logs.tgz on exit, even when the run is cut short by a
# SIGTERM. Exit status: non-zero when a build, test or sanitizer step failed
# (the benchmark is informational).
#
# Switches: FW_GPU_SKIP_TESTS (no parity tests: a second run for the
# sanitizers), FW_GPU_SKIP_SANITIZER, FW_GPU_SKIP_BENCH, FW_GPU_SKIP_NSYS;
# FW_GPU_TEST_TIMEOUT / FW_GPU_SAN_TIMEOUT / FW_GPU_BENCH_TIMEOUT (seconds per
# test binary, sanitizer run and benchmark; 300, 240, 420).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$ROOT/native/build-cuda}
LOGS=${FW_GPU_LOGS:-$BUILD/gpu-checks}
# PyTorch's Python: PYTHON, else python3 when it has torch, else FW_REF_PYTHON
PY=${PYTHON:-python3}
"$PY" -c "import torch" 2>/dev/null || PY=${FW_REF_PYTHON:-python3}
mkdir -p "$LOGS"
failed=0
passed=0
FAILED_NAMES=()
step() { echo; echo "=== $*"; }
record() {  # record NAME STATUS
  if [ "$2" -eq 0 ]; then
    passed=$((passed + 1)); echo "--- $1: OK"
  else
    failed=$((failed + 1)); FAILED_NAMES+=("$1"); echo "--- $1: FAILED ($2)"
  fi
}
pack_logs() { [ -n "${OUT:-}" ] && [ -d "$OUT" ] && tar -czf "$OUT/gpu-checks-logs.tgz" -C "$LOGS" . 2>/dev/null; return 0; }
trap pack_logs EXIT
trap 'echo "gpu-checks: interrupted"; exit 143' TERM INT
finish() {  # the summary, last; the exit status
  echo
  echo "failed: ${FAILED_NAMES[*]:-none}"
  echo "gpu-checks: $passed passed, $failed failed"
  echo "logs: $LOGS${OUT:+ (packed into \$OUT/gpu-checks-logs.tgz)}"
  [ "$failed" -eq 0 ]
}

step "device"
if ! nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; then
  echo "no NVIDIA GPU visible (nvidia-smi failed): nothing to check here"
  [ -n "${FW_GPU_CHECKS_WITHOUT_GPU:-}" ] || exit 2  # set it only to test this script itself
fi
export FW_CUDA_TESTS_REQUIRE_GPU=1  # a parity test may not pass by skipping
command -v nvcc >/dev/null || { echo "nvcc not found: put the CUDA toolkit's bin/ on PATH"; exit 2; }
nvcc --version | tail -1

if [ -z "${FW_NCCL_LIBRARY:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libnccl\.so\.2'; then
  NCCL=$("$PY" -c "import glob,nvidia,os;print(next(iter(sum([glob.glob(os.path.join(b,'nccl','lib','libnccl.so.2')) for b in nvidia.__path__],[])),''))" 2>/dev/null)
  [ -n "$NCCL" ] && export FW_NCCL_LIBRARY=$NCCL && echo "NCCL from $NCCL"
fi

# The CPU engine's build dependencies (OpenBLAS, nlohmann-json, GoogleTest)
# on a GPU machine that has no package registry: Debian packages fetched
# elsewhere with `apt-get download` into FW_GPU_DEBS, unpacked under /tmp
# (never over /) and pointed to.
CMAKE_EXTRA=(-DCMAKE_CUDA_ARCHITECTURES="${FW_CUDA_ARCHS:-90}")
if [ -n "${FW_GPU_DEBS:-}" ] && ls "$FW_GPU_DEBS"/*.deb >/dev/null 2>&1; then
  P=/tmp/fw-gpu-deps
  mkdir -p "$P"
  for f in "$FW_GPU_DEBS"/*.deb; do dpkg -x "$f" "$P"; done
  ML=$P/usr/lib/x86_64-linux-gnu
  export LD_LIBRARY_PATH="$ML/openblas-pthread:$ML:$P/usr/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # Gloo (optional: libgloo-dev, libgloo0, libhiredis0.14, libibverbs1,
  # libnl-3-200, libnl-route-3-200) lets ranks share the GPU in
  # cuda_worker_test; its CMake package names /usr/lib/libgloo.so.* by
  # absolute path, so point that at the unpacked copy.
  for g in "$P"/usr/share/cmake/Gloo/GlooTargets-*.cmake; do
    [ -f "$g" ] && sed -i "s#\"/usr/lib/#\"$P/usr/lib/#g" "$g"
  done
  CMAKE_EXTRA+=("-DCMAKE_PREFIX_PATH=$P/usr" "-DCBLAS_INCLUDE_DIR=$P/usr/include/x86_64-linux-gnu/openblas-pthread"
    "-DGTest_DIR=$ML/cmake/GTest" "-Dnlohmann_json_DIR=$P/usr/share/cmake/nlohmann_json")
  echo "build dependencies unpacked from $FW_GPU_DEBS into $P"
fi

step "configure + build ($BUILD)"
cmake -S "$ROOT/native" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "${CMAKE_EXTRA[@]}" >"$LOGS/configure.log" 2>&1
if ! grep -q "GPU tests enabled" "$LOGS/configure.log"; then
  # The toolkit has no cuBLAS: take it from PyTorch's nvidia-cublas wheel.
  WHEEL=$("$PY" - <<'PYEOF' 2>/dev/null
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit
for base in nvidia.__path__:
    for inc in glob.glob(os.path.join(base, "*", "include", "cublas_v2.h")):
        root = os.path.dirname(os.path.dirname(inc))
        libs = sorted(glob.glob(os.path.join(root, "lib", "libcublas.so*")))
        lts = sorted(glob.glob(os.path.join(root, "lib", "libcublasLt.so*")))
        if libs and lts:
            print(root, libs[0], lts[0])
            raise SystemExit
PYEOF
)
  if [ -n "$WHEEL" ]; then
    read -r WROOT WLIB WLT <<<"$WHEEL"
    echo "cuBLAS from the pip wheel at $WROOT"
    export LD_LIBRARY_PATH="$WROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    cmake -S "$ROOT/native" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "${CMAKE_EXTRA[@]}" "-DCUDA_cublas_LIBRARY=$WLIB" \
      "-DCUDA_cublasLt_LIBRARY=$WLT" "-DCMAKE_CXX_FLAGS=-I$WROOT/include" >"$LOGS/configure.log" 2>&1
  fi
fi
grep -i "flywheel\|error" "$LOGS/configure.log"
if ! grep -q "GPU tests enabled" "$LOGS/configure.log"; then
  echo "cuBLAS was not found, or configuring failed: no GPU tests to build (see $LOGS/configure.log;"
  echo "the CPU build needs cmake, ninja, libopenblas-dev, nlohmann-json3-dev, libgtest-dev)"; exit 2
fi
# every GPU test binary (native/tests/cuda/*_test.cpp) and the two benchmarks
TESTS=()
for f in "$ROOT"/native/tests/cuda/*_test.cpp; do TESTS+=("$(basename "$f" .cpp)"); done
BIN=$BUILD/cuda/tests
cmake --build "$BUILD" --target fw_cuda >"$LOGS/build-fw_cuda.log" 2>&1
s=$?
record "build fw_cuda" "$s"
if [ "$s" -ne 0 ]; then  # every target below needs it: stop here, with the errors
  grep -m 40 -B 2 -A 6 -iE "error|undefined reference" "$LOGS/build-fw_cuda.log"
  finish
  exit 1
fi
for t in "${TESTS[@]}" fw_cuda_kernel_bench fw_cuda_model_bench; do  # one broken target spoils no other
  rm -f "$BIN/$t"  # never run a stale binary after a failed build
  cmake --build "$BUILD" --target "$t" >"$LOGS/build-$t.log" 2>&1 ||
    { grep -m 20 -B 2 -A 6 -iE "error|undefined reference" "$LOGS/build-$t.log"; record "build $t" 1; }
done

step "parity tests"
if [ -n "${FW_GPU_SKIP_TESTS:-}" ]; then
  echo "skipped (FW_GPU_SKIP_TESTS)"
else
  for t in "${TESTS[@]}"; do
    [ -x "$BIN/$t" ] || continue  # its build failure is counted above
    timeout -k 10 "${FW_GPU_TEST_TIMEOUT:-300}" "$BIN/$t" 2>&1 | tee "$LOGS/$t.log" |
      grep -E "^(OK|NOT OK)|\[ +(FAILED|SKIPPED) +\]|PASSED"
    s=${PIPESTATUS[0]}
    # what failed, and where: gtest's failure lines with their messages
    [ "$s" -ne 0 ] && grep -E -A 8 ": Failure$|what\(\)|^NOT OK" "$LOGS/$t.log" | head -60
    [ "$s" -eq 124 ] && echo "$t: timed out after ${FW_GPU_TEST_TIMEOUT:-300} s"
    record "$t" "$s"
  done
fi

step "compute-sanitizer (tiny shapes)"
SAN=$(command -v compute-sanitizer)
for c in "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" "${CUDA_HOME:-/usr/local/cuda}/compute-sanitizer/compute-sanitizer"; do
  [ -z "$SAN" ] && [ -x "$c" ] && SAN=$c
done
if [ -n "${FW_GPU_SKIP_SANITIZER:-}" ]; then
  echo "skipped (FW_GPU_SKIP_SANITIZER)"
elif [ -n "$SAN" ]; then
  # the kernels' own tests, and the whole model on its tiny configs: all of
  # it under memcheck (seconds; with the two-rank trainer test, whose ZeRO-1
  # reads and writes the flat buffers' padded shards); under racecheck, which is slow on cuBLAS's
  # kernels (about 5 minutes for the forward/backward and KV-cache cases on
  # an H100), only the bf16 forward/backward (tensor-core attention)
  for tool in memcheck racecheck; do
    SAN_RUNS=("cuda_ops_test:*" "cuda_attention_test:*" "cuda_decode_test:*" "cuda_gemv_test:*")
    if [ "$tool" = memcheck ]; then SAN_RUNS+=("cuda_model_test:*" "cuda_trainer_dp_test:*")
    else SAN_RUNS+=("cuda_model_test:cuda_model.forward_backward_match_cpu_bf16"); fi
    for run in "${SAN_RUNS[@]}"; do
      t=${run%%:*} filter=${run#*:}
      [ -x "$BIN/$t" ] || continue
      timeout -k 10 "${FW_GPU_SAN_TIMEOUT:-240}" "$SAN" --tool "$tool" --error-exitcode 99 --print-limit 20 \
        "$BIN/$t" --gtest_filter="$filter" >"$LOGS/sanitizer-$tool-$t.log" 2>&1
      s=$?
      tail -3 "$LOGS/sanitizer-$tool-$t.log"
      record "$tool $t" "$s"
    done
  done
else
  echo "compute-sanitizer not on PATH (it ships in the toolkit's bin/)"; record compute-sanitizer 1
fi

step "benchmark (PyTorch eager / torch.compile, engine kernels)"
[ -n "${FW_GPU_SKIP_BENCH:-}" ] && { echo "skipped (FW_GPU_SKIP_BENCH)"; finish; exit; }
timeout -k 10 "${FW_GPU_BENCH_TIMEOUT:-420}" "$PY" "$ROOT/bench/engine/cuda/bench.py" --engine-graph --kernel-bench "$BIN/fw_cuda_kernel_bench" \
  --model-bench "$BIN/fw_cuda_model_bench" --json "$LOGS/bench.json" 2>&1 |
  tee "$LOGS/bench.log" | grep -v "^W[0-9]"

step "where a training step's GPU time goes (OpProfiler, informational)"
[ -x "$BIN/fw_cuda_model_bench" ] && "$BIN/fw_cuda_model_bench" --no-decode --warmup 2 --steps 3 --profile 3 \
  --json "$LOGS/profile.json" 2>&1 >/dev/null | tee "$LOGS/profile.log"

step "where a decode step's GPU time goes, per op (OpProfiler, informational)"
[ -x "$BIN/fw_cuda_model_bench" ] && timeout -k 10 120 "$BIN/fw_cuda_model_bench" --no-train --decode-batches 1,64 \
  --gen 64 --profile 1 --json "$LOGS/decode-profile.json" 2>&1 >/dev/null | tee "$LOGS/decode-profile.log"

step "where a batch-1 decode token's GPU time goes (Nsight Systems, informational)"
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
if [ -n "${FW_GPU_SKIP_NSYS:-}" ]; then
  echo "skipped (FW_GPU_SKIP_NSYS)"
elif [ -n "$NSYS" ] && [ -x "$BIN/fw_cuda_model_bench" ]; then
  # kernels inside the replayed decode graph, one row per kernel name
  "$NSYS" profile --cuda-graph-trace=node --force-overwrite=true -o "$LOGS/decode" \
    "$BIN/fw_cuda_model_bench" --no-train --decode-batches 1 --gen 64 --graph >"$LOGS/nsys-profile.log" 2>&1 &&
    "$NSYS" stats --report cuda_gpu_kern_sum --format table "$LOGS/decode.nsys-rep" 2>/dev/null |
    tee "$LOGS/decode-kernels.log" | head -30
else
  echo "nsys not found: no per-kernel decode breakdown"
fi

finish
