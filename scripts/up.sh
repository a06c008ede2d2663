#!/usr/bin/env bash
# Brings the platform up on this machine and runs its main job: installs what
# is missing, makes sure NATS and Postgres answer, starts the data service,
# ingests the bundled sample corpus over HTTP and prints the cleaning report.
# The service keeps running in the background; its log and pid are in .fw-data/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$FW_ROOT"
./scripts/bootstrap.sh
./scripts/infra.sh

mkdir -p .fw-data
if [ ! -f .fw-data/api-token ]; then
  node -e 'process.stdout.write(require("node:crypto").randomBytes(24).toString("hex"))' > .fw-data/api-token
fi
export FW_API_TOKENS="${FW_API_TOKENS:-$(cat .fw-data/api-token)}"
export FW_API_TOKEN="${FW_API_TOKEN:-${FW_API_TOKENS%%,*}}"
export FW_ARTIFACT_ROOT="${FW_ARTIFACT_ROOT:-file://$FW_ROOT/.fw-data/artifacts/}"
export PORT="${PORT:-8081}"
export FW_DATA_URL="${FW_DATA_URL:-http://127.0.0.1:$PORT}"

if ! curl -fsS "$FW_DATA_URL/healthz" >/dev/null 2>&1; then
  echo "up: starting the data service on $FW_DATA_URL (log: .fw-data/data-service.log)"
  nohup node services/data/src/main.ts > .fw-data/data-service.log 2>&1 &
  echo $! > .fw-data/data-service.pid
fi
for _ in $(seq 1 120); do
  curl -fsS "$FW_DATA_URL/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "$FW_DATA_URL/readyz" >/dev/null || { echo "up: the data service did not become ready" >&2; tail -20 .fw-data/data-service.log >&2; exit 1; }

node services/data/src/cli.ts ingest services/data/assets/sample/sample.jsonl --dataset sample
echo "up: the data service keeps running (pid $(cat .fw-data/data-service.pid 2>/dev/null || echo '?')); stop it with: kill \$(cat .fw-data/data-service.pid)"
