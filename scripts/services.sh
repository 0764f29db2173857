#!/usr/bin/env bash
# Install (if missing) and start PostgreSQL and Redis as real servers on loopback,
# with their data under var/, and print the URLs to use.
#
#   scripts/services.sh start   -> prints `export DATABASE_URL=... REDIS_URL=...`
#   scripts/services.sh stop
#
# Used by .ci/run and `make test-pg`; safe to run twice (an already running
# server is reused). Runs as root on Debian (apt-get installs what is missing).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VAR="$ROOT/var"
PG_PORT="${PORTAL_PG_PORT:-54329}"
REDIS_PORT="${PORTAL_REDIS_PORT:-6390}"
# PostgreSQL runs as the postgres user, which may not traverse the checkout (a clone under /root is
# mode 0700): its data and socket live under /var/tmp, one directory per port.
PG_HOME="${PORTAL_PG_HOME:-/var/tmp/portal-pg-$PG_PORT}"
PGDATA="$PG_HOME/data"
PG_SOCK="$PG_HOME/sock"
log() { echo "[services] $*" >&2; }

apt_install() {
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2; then
            apt-get update -qq >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
        fi
    fi
}

pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$dir" ] || { log "PostgreSQL binaries not found"; exit 1; }
    echo "$dir"
}

start_postgres() {
    apt_install postgresql
    local bin; bin=$(pg_bin)
    mkdir -p "$VAR" "$PG_HOME" "$PG_SOCK"
    chown postgres:postgres "$PG_HOME" "$PG_SOCK"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        log "initdb $PGDATA"
        mkdir -p "$PGDATA" && chown postgres:postgres "$PGDATA"
        runuser -u postgres -- "$bin/initdb" -D "$PGDATA" -U postgres -A trust --no-sync >/dev/null
    fi
    if ! runuser -u postgres -- "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
        log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
        runuser -u postgres -- "$bin/pg_ctl" -D "$PGDATA" -l "$PG_SOCK/postgres.log" -w -t 60 start \
            -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_SOCK -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >/dev/null
    fi
    runuser -u postgres -- "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname='portal'" | grep -q 1 ||
        runuser -u postgres -- "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres portal
}

start_redis() {
    apt_install redis-server
    if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then return; fi
    log "starting Redis on 127.0.0.1:$REDIS_PORT"
    mkdir -p "$VAR/redis"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$VAR/redis" --save "" --appendonly no \
        --daemonize yes --logfile "$VAR/redis.log" --pidfile "$VAR/redis.pid"
    for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return; sleep 0.1; done
    log "Redis did not answer"; exit 1
}

case "${1:-}" in
    start)
        start_postgres
        start_redis
        echo "export DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/portal REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
        ;;
    stop)
        bin=$(pg_bin)
        runuser -u postgres -- "$bin/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true
        redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
