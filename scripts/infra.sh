#!/usr/bin/env bash
# Makes sure NATS (JetStream) and PostgreSQL answer at NATS_URL / DATABASE_URL.
# When nothing answers on a loopback address it starts Debian's servers; where
# a Docker engine runs and the Debian servers are absent, it uses containers.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

hostport() { local u="${1#*://}"; u="${u#*@}"; u="${u%%/*}"; echo "$u"; }
answers() { local hp; hp=$(hostport "$1"); timeout 2 bash -c "exec 3<>/dev/tcp/${hp%:*}/${hp##*:}" 2>/dev/null; }
wait_for() { for _ in $(seq 1 60); do answers "$1" && return 0; sleep 0.5; done; echo "infra: $2 did not come up at $1" >&2; return 1; }
have_docker() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

if ! answers "$NATS_URL"; then
  hp=$(hostport "$NATS_URL")
  if [ -x /usr/sbin/nats-server ]; then
    echo "infra: starting nats-server with JetStream on $hp"
    mkdir -p "${FW_NATS_STORE:-/var/lib/nats-server}"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
      -a "${hp%:*}" -p "${hp##*:}" -js -sd "${FW_NATS_STORE:-/var/lib/nats-server}" -l /var/log/nats-server.log
  elif have_docker; then
    docker run -d --rm --name fw-nats -p "${hp##*:}:4222" nats:2 -js >/dev/null
  else
    echo "infra: nothing answers at $NATS_URL and neither nats-server nor Docker is available" >&2; exit 1
  fi
  wait_for "$NATS_URL" nats
fi

if ! answers "$DATABASE_URL"; then
  if ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "infra: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
  elif have_docker; then
    docker run -d --rm --name fw-postgres -e POSTGRES_HOST_AUTH_METHOD=trust -p 5432:5432 postgres:16 >/dev/null
  else
    echo "infra: nothing answers at $DATABASE_URL and neither PostgreSQL nor Docker is available" >&2; exit 1
  fi
  wait_for "$DATABASE_URL" postgres
fi
