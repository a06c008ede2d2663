#!/usr/bin/env bash
# The whole test suite: installs what is missing, makes sure NATS and Postgres
# answer, then lints, typechecks and tests every project (TypeScript and native).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$FW_ROOT"
./scripts/bootstrap.sh
./scripts/infra.sh
nx run-many -t lint typecheck --parallel=2 --outputStyle=stream
nx run-many -t test --parallel=1 --outputStyle=stream
