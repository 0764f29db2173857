"""Signed short-lived grants: what the portal hands a host's console relay so that it opens one
desktop's VNC display, once. Pure: no ORM, no settings; the key is passed in.

A grant is ``base64url(json) + "." + hex(HMAC-SHA256(key, base64url part))`` where the JSON is
``{"h": host, "d": domain, "id": desktop id, "exp": unix time, "n": 16 random bytes as hex}``.
The relay refuses a bad format, a bad signature (compared in constant time), an expired grant and
a host it does not serve; it remembers nonces until they expire to refuse a replay (``NonceCache``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

#: The longest grant a relay accepts on its first line (a grant is ~200 bytes).
MAX_GRANT_BYTES = 2048


class GrantRefused(Exception):
    """The grant may not be used; ``reason`` says why in words (sent to the portal, never the token)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Grant:
    host: str
    domain: str
    desktop_id: int
    expires: int
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode("ascii"), hashlib.sha256).hexdigest()


def sign_grant(
    key: bytes, *, host: str, domain: str, desktop_id: int, ttl_s: int = 30, now: float | None = None
) -> str:
    """A grant for ``domain`` on ``host``, valid ``ttl_s`` seconds from ``now``."""
    expires = int((time.time() if now is None else now) + ttl_s)
    claims = {"h": host, "d": domain, "id": int(desktop_id), "exp": expires, "n": secrets.token_hex(16)}
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_mac(key, body)}"


def verify_grant(key: bytes, token: str, *, hosts: set[str] | frozenset[str], now: float | None = None) -> Grant:
    """The grant in ``token`` if it is well-formed, signed with ``key``, not expired and for one of
    ``hosts``; otherwise GrantRefused. (Replays are the caller's ``NonceCache``.)"""
    if not isinstance(token, str) or len(token) > MAX_GRANT_BYTES or token.count(".") != 1:
        raise GrantRefused("grant refused: format")
    body, mac = token.split(".")
    if not hmac.compare_digest(_mac(key, body), mac):
        raise GrantRefused("grant refused: signature")
    try:
        claims = json.loads(_unb64(body))
        grant = Grant(
            host=str(claims["h"]),
            domain=str(claims["d"]),
            desktop_id=int(claims["id"]),
            expires=int(claims["exp"]),
            nonce=str(claims["n"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise GrantRefused("grant refused: format") from None
    if grant.expires <= (time.time() if now is None else now):
        raise GrantRefused("grant refused: expired")
    if grant.host not in hosts:
        raise GrantRefused(f"this relay does not serve host {grant.host}")
    return grant


class NonceCache:
    """The nonces of grants already used, kept until they expire: a grant works once per relay.
    Not thread-safe: the relay's one event loop is its only user."""

    def __init__(self):
        self._seen: dict[str, int] = {}

    def use(self, grant: Grant, *, now: float | None = None) -> None:
        """Mark ``grant`` used, or raise GrantRefused when it already was."""
        now = time.time() if now is None else now
        # Forget expired nonces first: an expired grant is refused by verify_grant anyway, so the cache
        # only ever holds the grants of the last TTL.
        self._seen = {n: exp for n, exp in self._seen.items() if exp > now}
        if grant.nonce in self._seen:
            raise GrantRefused("grant refused: replayed")
        self._seen[grant.nonce] = grant.expires
