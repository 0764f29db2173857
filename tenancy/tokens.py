"""API tokens: made, rotated and revoked here, each change audited; checked by ``TokenAuthentication``.

A key is ``gpp_`` and 256 random bits; the database keeps only its SHA-256 (``APIToken.digest``) and
its first characters (``prefix``), so a copy of the database, the admin or a list page never shows a
key that works. The key is returned once, by ``issue_token`` or ``rotate_token``.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets

from django.db import transaction
from django.utils import timezone
from rest_framework import authentication, exceptions

from audit import services as audit
from core.errors import Conflict
from tenancy.models import APIToken

KEY_PREFIX = "gpp_"
#: Characters of the key kept in clear (``gpp_`` and 8 of the 43 random ones): enough to tell tokens apart.
SHOWN_CHARS = len(KEY_PREFIX) + 8
#: ``last_used_at`` is written at most this often per token, so a busy script does not write on every call.
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _snapshot(token: APIToken) -> dict:
    return {"user": token.user_id, "name": token.name, "prefix": token.prefix}


def new_key() -> tuple[str, dict]:
    """A fresh key and what a row keeps of it (``prefix``, ``digest``)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, {"prefix": key[:SHOWN_CHARS], "digest": digest_of(key)}


def issue_token(user, *, actor, name: str = "", via: str = "portal") -> tuple[APIToken, str]:
    """Make a token for ``user``; returns the row and the key, which is never shown again.
    Audited as ``api_token.created`` (the key is not in the event: only its prefix)."""
    key, kept = new_key()
    with transaction.atomic():
        token = APIToken.objects.create(user=user, name=name[:100], **kept)
        audit.record_row("api_token.created", token, actor=actor, after={**_snapshot(token), "via": via})
    return token, key


def revoke_token(token: APIToken, *, actor) -> APIToken:
    """Revoke ``token``: it authenticates nobody from now on. Audited as ``api_token.revoked``.
    A token revoked already is a ``Conflict`` (two people revoking at once: one of them wins)."""
    with transaction.atomic():
        # The conditional update decides who revokes: exactly one caller sees a row change.
        now = timezone.now()
        if not APIToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now):
            raise Conflict(f"Token {token.prefix}… is already revoked.")
        token.revoked_at = now
        audit.record_row("api_token.revoked", token, actor=actor, before=_snapshot(token), after={"revoked_at": now})
    return token


def rotate_token(token: APIToken, *, actor) -> tuple[APIToken, str]:
    """Revoke ``token`` and make its successor (same owner and name) in one transaction."""
    with transaction.atomic():
        revoke_token(token, actor=actor)
        return issue_token(token.user, actor=actor, name=token.name, via=f"rotation of {token.prefix}…")


def tokens_of(user):
    """The tokens ``user`` may see and revoke: their own."""
    return APIToken.objects.filter(user=user)


def get_token_for(user, pk) -> APIToken:
    """``user``'s own token ``pk``; someone else's answers like a missing one."""
    return tokens_of(user).select_related("user").get(pk=pk)


def user_for_key(key: str):
    """The user a presented key authenticates, or ``None`` (unknown or revoked key, inactive user)."""
    token = APIToken.objects.select_related("user").filter(digest=digest_of(key), revoked_at__isnull=True).first()
    if token is None or not token.user.is_active:
        return None, token
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        APIToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user, token


class TokenAuthentication(authentication.TokenAuthentication):
    """``Authorization: Token <key>``, checked against the stored digests (DRF's own reads plain keys)."""

    def authenticate_credentials(self, key):
        user, token = user_for_key(key)
        if user is None:
            if token is not None:
                raise exceptions.AuthenticationFailed("This token's user is inactive.")
            raise exceptions.AuthenticationFailed("Invalid or revoked token. Make a new one at /account/tokens/.")
        return user, token
