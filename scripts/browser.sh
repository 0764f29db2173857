#!/usr/bin/env bash
# What the browser tests (portal/tests/browser/) need: Debian's Chromium at /usr/bin/chromium and
# the Playwright Python package in .venv (from requirements-dev.txt). Playwright drives that
# Chromium through its bundled driver; its own browser downloads are never used.
#
#   scripts/browser.sh     -> installs what is missing; safe to run twice
#
# Runs as root on Debian (apt-get installs what is missing).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
log() { echo "[browser] $*" >&2; }

if [ ! -x /usr/bin/chromium ]; then
    log "installing chromium"
    pkgs=(chromium fonts-dejavu-core)
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2; then
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
    fi
fi

[ -x "$PY" ] || { log "no $PY: run scripts/bootstrap.sh (make venv) first"; exit 1; }
if ! "$PY" -c "import playwright" 2>/dev/null; then
    log "installing playwright into .venv (requirements-dev.txt)"
    spec=$(grep -E '^playwright([<>=!~ ]|$)' "$ROOT/requirements-dev.txt" || echo playwright)
    "$PY" -m pip install -q "$spec" >&2
fi
"$PY" -c "import playwright" || { log "playwright does not import in .venv"; exit 1; }
log "$(/usr/bin/chromium --version 2>/dev/null || echo chromium), playwright $("$PY" -c 'from importlib.metadata import version; print(version("playwright"))')"
