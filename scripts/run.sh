#!/usr/bin/env bash
# `make run`: Redis, the lab (VM lab when libvirt + QEMU can run here, else the test-driver lab),
# one Celery worker per host queue plus one for the default queue, beat, the outbox relay, the console relay, and the ASGI portal
# in the foreground. Ctrl-C stops the processes it started (`make stop` also stops them from elsewhere,
# through var/run.pids, and stops Redis and the VM lab daemons). Logs: var/log/.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY=.venv/bin/python
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
mkdir -p var/log
pids=()
PIDFILE=var/run.pids  # this script and every process it started, for `make stop`
echo $$ >"$PIDFILE"
cleanup() {
    trap - EXIT INT TERM
    echo; echo "Stopping the portal, workers, beat, the outbox relay and the console relay..."
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null; done
    wait 2>/dev/null
    rm -f "$PIDFILE"
    echo "Stopped. Redis and the VM lab daemons are still running: \`make stop\` stops them."
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
# Links in mail point at this portal; without a mail server the demo's mail (notifications, invitations,
# password resets) is written to var/mail/, one file per message (set EMAIL_HOST to send it instead).
export PORTAL_PUBLIC_URL="${PORTAL_PUBLIC_URL:-http://$HOST:$PORT}"
if [ -z "${EMAIL_BACKEND:-}${EMAIL_HOST:-}" ]; then
    export EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend EMAIL_FILE_PATH="$ROOT/var/mail"
    mkdir -p var/mail
    echo "Mail: written to var/mail/ (no EMAIL_HOST set)"
fi

start() {  # name, command...
    local name=$1; shift
    setsid "$@" >"var/log/$name.log" 2>&1 &
    pids+=($!)
    echo $! >>"$PIDFILE"
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
# Work a change committed while Redis was away reaches the hosts as soon as it is back (core/outbox.py).
start outbox-relay $PY manage.py relay_outbox
start beat $PY -m celery -A portal beat -l INFO --schedule var/celerybeat-schedule

echo
echo "Portal: http://$HOST:$PORT/   API docs: http://$HOST:$PORT/api/docs/   (Ctrl-C or \`make stop\` stops it)"
# In the background so that a TERM from `make stop` runs the trap at once (bash runs traps only
# between foreground commands); Ctrl-C reaches this script, whose trap stops daphne.
.venv/bin/daphne -b "$HOST" -p "$PORT" portal.asgi:application &
pids+=($!)
echo $! >>"$PIDFILE"
wait "$!"
