#!/usr/bin/env bash
# Make .venv/ ready on a fresh Debian machine (run as root): install the system
# packages that the Python requirements build against, create the virtualenv,
# install requirements-dev.txt. Re-running is cheap: a stamp file remembers the
# requirement files' checksum.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
STAMP="$VENV/.requirements.sha256"
log() { echo "[bootstrap] $*" >&2; }

need=()
command -v gcc >/dev/null || need+=(gcc)
command -v pkg-config >/dev/null || need+=(pkg-config)
pkg-config --exists libvirt 2>/dev/null || need+=(libvirt-dev)
# python-ldap (issue 17: LDAP sign-in) builds against OpenLDAP's and SASL's headers
[ -e /usr/include/ldap.h ] || need+=(libldap2-dev)
[ -e /usr/include/sasl/sasl.h ] || need+=(libsasl2-dev)
"$PYTHON" -c "import ensurepip, venv" 2>/dev/null || need+=(python3-venv)
if [ "$(command -v "$PYTHON")" = /usr/bin/python3 ] && ! [ -e "/usr/include/python3.$(/usr/bin/python3 -c 'import sys;print(sys.version_info[1])')/Python.h" ]; then
    need+=(python3-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
    log "installing system packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

sum=$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$sum" ]; then
    exit 0
fi
[ -x "$VENV/bin/python" ] || { log "creating $VENV with $($PYTHON --version)"; "$PYTHON" -m venv "$VENV"; }
log "installing Python requirements"
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/requirements-dev.txt" 2>&1 | grep -v "^WARNING: Location" >&2 || true
"$VENV/bin/python" -c "import django, rest_framework, celery, channels, libvirt, pynvml, psycopg" \
    || { log "the virtualenv is incomplete"; exit 1; }
echo "$sum" > "$STAMP"
