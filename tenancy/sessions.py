"""Sign-in sessions: how long one lasts, and ending a person's sessions.

A session ends PORTAL_SESSION_HOURS after its sign-in (``SESSION_COOKIE_AGE``) or after
PORTAL_SESSION_IDLE_MINUTES without a request (``SessionExpiryMiddleware``: the last-seen time is
written at most once a minute, so a busy page does not save its session on every request). An expired
session is flushed and the person is sent to the log-in page with "Your session expired" (API calls
just continue unauthenticated). Consoles are not closed by an expiry: they have their own idle limit.

``end_sessions`` deletes a person's database sessions (every one, or all but the one in use);
``sign_out_everywhere`` does that on request, audited, and closes the person's consoles and live
sockets (``close_connections``). API tokens are left alone: ``tenancy.tokens`` revokes those.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_logged_in
from django.contrib.auth.views import redirect_to_login
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone

from core import live
from tenancy.signin import record_account_event

#: Session keys holding the epoch seconds of the sign-in and of the last request seen.
SIGNED_IN_AT = "portal_signed_in_at"
LAST_SEEN = "portal_last_seen"
#: The last-seen time is written when it is older than this (seconds).
TOUCH_EVERY_S = 60
EXPIRED_MESSAGE = "Your session expired: sign in again to continue."
#: The close code a console gets when its person signed out (``consoles.consumers.Close.SIGNED_OUT``).
CONSOLE_SIGNED_OUT = 4003
#: The live-socket event that makes each of a person's sockets check that its session still exists.
SESSION_ENDED = "session.ended"


def end_sessions(user, *, keep: str | None = None) -> int:
    """Delete ``user``'s sign-in sessions but the one keyed ``keep`` (database sessions: each is
    decoded, as Django keeps no index by user; this runs rarely). Returns how many were ended."""
    uid = str(user.pk)
    ended = [
        s.pk
        for s in Session.objects.filter(expire_date__gt=timezone.now()).exclude(pk=keep or "").iterator(chunk_size=500)
        if s.get_decoded().get(SESSION_KEY) == uid
    ]
    Session.objects.filter(pk__in=ended).delete()
    return len(ended)


def close_consoles(user_id: int, reason: str) -> None:
    """Close every open console of the person (after commit), in every window and browser."""
    live.publish_on_commit(
        [live.console_user_group(user_id)], "console.close", {"code": CONSOLE_SIGNED_OUT, "reason": reason}
    )


def close_connections(user_id: int, reason: str) -> None:
    """After commit: the person's consoles close, and each of their live sockets whose session is gone
    closes (``allocations.consumers.LiveConsumer`` checks its own session on ``session.ended``)."""
    close_consoles(user_id, reason)
    live.publish_on_commit([live.user_group(user_id)], SESSION_ENDED, {})


def sign_out_everywhere(user, *, actor) -> int:
    """End every session of ``user`` (this browser's too), close their consoles and live sockets;
    audited as ``auth.signed_out_everywhere``. API tokens keep working. Returns the sessions ended."""
    with transaction.atomic():
        ended = end_sessions(user)
        record_account_event("auth.signed_out_everywhere", actor=actor, user=user, after={"sessions_ended": ended})
        close_connections(user.pk, "You signed out everywhere.")
    return ended


# --- expiry ---------------------------------------------------------------------------------------------
def _now() -> int:
    return int(time.time())


def expired(session, now: int) -> bool:
    """Past the absolute limit since sign-in, or idle longer than allowed (0: no idle limit)."""
    signed_in = session.get(SIGNED_IN_AT, now)
    last_seen = session.get(LAST_SEEN, now)
    idle_s = settings.PORTAL_SESSION_IDLE_MINUTES * 60
    return now - signed_in >= settings.SESSION_COOKIE_AGE or (idle_s > 0 and now - last_seen >= idle_s)


def _record_expiry(user) -> None:
    record_account_event("auth.session_expired", actor=user, user=user)


class SessionExpiryMiddleware:
    """Ends a signed-in session that is too old or was idle too long (after ``MessageMiddleware``)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and hasattr(request, "session"):
            session, now = request.session, _now()
            if expired(session, now):
                _record_expiry(user)
                session.flush()  # not logout(): that closes the person's consoles in every browser
                request.user = AnonymousUser()
                if not request.path.startswith("/api/"):
                    messages.warning(request, EXPIRED_MESSAGE)
                    return redirect_to_login(request.get_full_path())
            else:
                session.setdefault(SIGNED_IN_AT, now)  # sessions from before this check start counting now
                if now - session.get(LAST_SEEN, 0) >= TOUCH_EVERY_S:
                    session[LAST_SEEN] = now
        return self.get_response(request)


def stamp_sign_in(sender, request, user, **kwargs):
    """A sign-in starts both clocks afresh (``login`` keeps the data of a session it cycles)."""
    if request is not None and hasattr(request, "session"):
        now = _now()
        request.session[SIGNED_IN_AT] = now
        request.session[LAST_SEEN] = now


def connect() -> None:
    """Connect the receiver (``TenancyConfig.ready``)."""
    user_logged_in.connect(stamp_sign_in, dispatch_uid="tenancy.sessions.stamp")
