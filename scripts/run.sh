#!/usr/bin/env bash
# `make run`: Redis, the lab (VM lab when libvirt + QEMU can run here, else the test-driver lab),
# one Celery worker per host queue plus one for the default queue, beat, the console relay, and the ASGI portal
# in the foreground. Ctrl-C stops everything it started. Logs: var/log/.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY=.venv/bin/python
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
mkdir -p var/log
pids=()
cleanup() {
    trap - EXIT INT TERM
    echo; echo "Stopping workers and beat..."
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null; done
    wait 2>/dev/null
}
trap cleanup EXIT INT TERM

if [ -z "${LAB_FLAVOUR:-}" ]; then
    if scripts/vmlab.sh start >var/log/vmlab.log 2>&1; then LAB_FLAVOUR=vm; else LAB_FLAVOUR=test; fi
fi
if [ "$LAB_FLAVOUR" = vm ]; then
    echo "Lab: VM lab (real libvirtd + QEMU/TCG guests with VNC on 127.0.0.1), see var/log/vmlab.log"
    export PORTAL_DOMAIN_TYPE=qemu
else
    echo "Lab: test-driver lab (libvirt's test driver; no real guests: libvirtd/QEMU could not start here," \
         "see var/log/vmlab.log)"
fi
$PY manage.py lab create --flavour "$LAB_FLAVOUR" || exit 1

start() {  # name, command...
    local name=$1; shift
    setsid "$@" >"var/log/$name.log" 2>&1 &
    pids+=($!)
    echo "  started $name (pid $!, log var/log/$name.log)"
}
queues=$($PY manage.py lab queues)
for queue in $queues; do
    start "worker-$queue" $PY -m celery -A portal worker -Q "$queue" -c 1 -n "$queue@%h" -l INFO
done
start worker-default $PY -m celery -A portal worker -Q celery -c 1 -n "default@%h" -l INFO
# The console relay beside the hosts' workers (its own process, reached over TCP as if remote; docs/deployment.md).
lab_hosts=$(for queue in $queues; do printf '%s,' "${queue#host.}"; done)
start console-relay $PY manage.py console_relay --listen "${PORTAL_CONSOLE_RELAY:-127.0.0.1:5800}" \
    --uri qemu:///system --hosts "${lab_hosts%,}"
start beat $PY -m celery -A portal beat -l INFO --schedule var/celerybeat-schedule

echo
echo "Portal: http://$HOST:$PORT/   API docs: http://$HOST:$PORT/api/docs/   (Ctrl-C stops it all)"
.venv/bin/daphne -b "$HOST" -p "$PORT" portal.asgi:application
