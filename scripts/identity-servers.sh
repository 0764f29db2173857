#!/usr/bin/env bash
# What the identity tests (identity/tests/) need: OpenLDAP's slapd and the ldap-utils client tools.
# The tests start their own slapd (a temporary slapd.conf, an ephemeral port on 127.0.0.1) and their own
# OpenID Connect provider (a Django project in identity/tests/oidc_provider, from .venv): nothing here runs.
#
#   scripts/identity-servers.sh     -> installs what is missing; safe to run twice
#
# Runs as root on Debian (apt-get installs what is missing). The Debian package would start a system slapd
# of its own: policy-rc.d keeps it from starting during the install, and it is stopped if it runs anyway.
set -euo pipefail

log() { echo "[identity-servers] $*" >&2; }

if [ ! -x /usr/sbin/slapd ] || ! command -v ldapadd >/dev/null; then
    log "installing slapd ldap-utils"
    pkgs=(slapd ldap-utils)
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    trap 'if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi' EXIT
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2; then
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
    fi
    if [ -s /var/run/slapd/slapd.pid ]; then
        kill "$(cat /var/run/slapd/slapd.pid)" 2>/dev/null || true  # the package's own; the tests start theirs
    fi
fi

log "$( (/usr/sbin/slapd -VV 2>&1 || true) | sed -n 1p)"
[ -f /etc/ldap/schema/inetorgperson.schema ] || { log "no /etc/ldap/schema/inetorgperson.schema"; exit 1; }
