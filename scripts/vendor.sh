#!/usr/bin/env bash
# Vendor the browser libraries the pages use into static/vendor/, so nothing is loaded from a CDN
# at run time. Versions are pinned in frontend/package.json and frontend/package-lock.json.
#
#   scripts/vendor.sh        -> npm ci in frontend/, copy the dist files and licences, remove node_modules
#
# static/vendor/ is committed: running the portal or its tests never needs npm. Run this again
# only after changing a version in frontend/package.json (then `npm install` there first to update
# the lock file). Installs nodejs and npm with apt-get (Debian, root) only if npm is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FRONTEND="$ROOT/frontend"
VENDOR="$ROOT/static/vendor"
MODULES="$FRONTEND/node_modules"
log() { echo "[vendor] $*" >&2; }

if ! command -v npm >/dev/null 2>&1; then
    log "installing nodejs and npm"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >&2; then
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >&2
    fi
fi

trap 'rm -rf "$MODULES"' EXIT
log "npm ci in frontend/"
(cd "$FRONTEND" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)

# copy PACKAGE DEST PATH... : each PATH (relative to the package) into static/vendor/DEST/ under its base
# name: a file as it is, a directory with everything under it (ES modules that import each other by
# relative paths keep their layout); plus the package's licence as DEST/LICENSE (LICENSE or LICENSE.txt).
# DEST/VERSION records which version is vendored.
copy() {
    local package="$1" dest="$VENDOR/$2"
    shift 2
    local src="$MODULES/$package" path licence
    rm -rf "$dest"
    mkdir -p "$dest"
    for path in "$@"; do
        if [ -d "$src/$path" ]; then
            cp -R "$src/$path" "$dest/$(basename "$path")"
        elif [ -f "$src/$path" ]; then
            cp "$src/$path" "$dest/$(basename "$path")"
        else
            log "missing $package/$path"
            exit 1
        fi
    done
    for licence in LICENSE LICENSE.txt ""; do
        [ -n "$licence" ] || { log "no LICENSE in $package"; exit 1; }
        [ -f "$src/$licence" ] && { cp "$src/$licence" "$dest/LICENSE"; break; }
    done
    node -p "require('$src/package.json').name + ' ' + require('$src/package.json').version" >"$dest/VERSION"
    log "$(cat "$dest/VERSION") -> static/vendor/$(basename "$dest")/"
}

copy uplot uplot dist/uPlot.iife.min.js dist/uPlot.min.css
copy htmx.org htmx dist/htmx.min.js
# noVNC's RFB client is ES modules: core/ imports ../vendor/pako/, so both keep their place under novnc/.
# Its LICENSE.txt names the MPL 2.0 for core/ (docs/LICENSE.MPL-2.0) and AUTHORS; pako carries its own.
copy @novnc/novnc novnc core vendor AUTHORS docs/LICENSE.MPL-2.0
