#!/usr/bin/env bash
# The whole test suite: installs what is missing, makes sure NATS and Postgres
# answer, then lints, typechecks and tests every project (TypeScript and
# native), and closes with one "N passed, N failed" line over all of them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$FW_ROOT"
./scripts/bootstrap.sh
./scripts/infra.sh
nx run-many -t lint typecheck --parallel=2 --outputStyle=stream

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
nx run-many -t test --parallel=1 --outputStyle=stream 2>&1 | tee "$log" || status=$?
# Vitest prints "Tests  N passed | M failed (T)"; CTest "x% tests passed, M tests failed out of T".
sed 's/\x1b\[[0-9;]*m//g' "$log" | awk '
  / Tests +[0-9]/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  /tests passed, [0-9]+ tests failed out of/ { for (i = 1; i <= NF; i++) if ($i == "out") { t = $(i+2); ff = $(i-3) }; p += t - ff; f += ff }
  END { printf "%d passed, %d failed\n", p, f }'
exit "$status"
