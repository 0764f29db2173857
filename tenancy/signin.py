"""Signing in: throttled by django-axes (settings ``AXES_*``), every outcome in the audit trail.

Axes counts failures per account (PORTAL_LOGIN_FAILURE_LIMIT) and ``SignInBackend`` per address
(PORTAL_LOGIN_ADDRESS_FAILURE_LIMIT, higher: many people may share one address); at either limit further
attempts are refused before any password is checked (the backend comes first in
``AUTHENTICATION_BACKENDS``) until the cool-off has passed, and ``lockout_response`` answers them in
words. The receivers here record ``auth.signed_in``, ``auth.sign_in_failed`` and ``auth.locked_out``
(once, when an account's lockout begins). No event holds a
password, and a name that is no account's is not kept either (it is often a password typed one field
too early).
"""

from __future__ import annotations

import math

from axes.backends import AxesStandaloneBackend
from axes.exceptions import AxesBackendPermissionDenied
from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db import transaction
from django.db.models import Sum
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone

from audit import services as audit


class SignInBackend(AxesStandaloneBackend):
    """Axes' check per account (``AXES_LOCKOUT_PARAMETERS``), plus one per address with its own, higher
    limit (``PORTAL_LOGIN_ADDRESS_FAILURE_LIMIT``): at axes' single limit, five wrong passwords for one
    person from a shared address (a campus NAT, a proxy, the demo's loopback) paused sign-ins for
    everyone there. An address past its limit is refused like a locked account, before any password."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is not None and address_failures(request) >= settings.PORTAL_LOGIN_ADDRESS_FAILURE_LIMIT:
            request.axes_locked_out = True
            raise AxesBackendPermissionDenied("too many failed sign-ins from this address")
        return super().authenticate(request, username=username, password=password, **kwargs)


def address_failures(request) -> int:
    """Failed sign-ins from the request's address within the cool-off, over every account tried."""
    address = client_address(request)
    cool_off = get_cool_off(request)
    if not address or not cool_off:
        return 0
    since = timezone.now() - cool_off
    attempts = AccessAttempt.objects.filter(ip_address=address, attempt_time__gte=since)
    return attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0


def _minutes(request=None) -> int:
    cool_off = get_cool_off(request)
    return max(1, math.ceil(cool_off.total_seconds() / 60)) if cool_off else 0


def lockout_message(request=None) -> str:
    minutes = _minutes(request)
    when = (
        f"Try again in {minutes} minute{'s' if minutes != 1 else ''}; a platform admin can lift it sooner."
        if minutes
        else "A platform admin can lift it."
    )
    return (
        "Too many failed sign-ins for this account or from this address: signing in is paused, and no "
        f"password is checked meanwhile. {when}"
    )


def lockout_response(request, original_response=None, credentials=None):
    """What a refused sign-in gets (``AXES_LOCKOUT_CALLABLE``): 429 with the reason, in the API's error
    shape under /api/, as a page in the portal's look elsewhere; ``Retry-After`` says when to try again."""
    message = lockout_message(request)
    if request.path.startswith("/api/"):
        response = JsonResponse({"error": {"status": 429, "code": "locked_out", "message": message}}, status=429)
    else:
        response = render(request, "registration/locked_out.html", {"message": message}, status=429)
    if _minutes(request):
        response["Retry-After"] = str(_minutes(request) * 60)
    return response


def client_address(request) -> str | None:
    """The address sign-in failures are counted by (``AXES_CLIENT_IP_CALLABLE``): REMOTE_ADDR, or behind a
    reverse proxy (``PORTAL_BEHIND_PROXY``) the last X-Forwarded-For entry, the one the proxy appended;
    entries before it are the caller's to invent."""
    if getattr(settings, "PORTAL_CLIENT_ADDRESS_FROM_PROXY", False):
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if forwarded:
            return forwarded[-1]
    return request.META.get("REMOTE_ADDR") or None


def _known_user(username):
    if not username:
        return None
    User = get_user_model()
    return User.objects.filter(**{User.USERNAME_FIELD: username}).first()


def record_account_event(verb: str, *, actor, user, after: dict | None = None) -> None:
    """An audit event about a person's account (``auth.*``): a sign-in, a reset, a session ended; ``user``
    None for an account that does not exist. Inside the caller's transaction when there is one."""
    with transaction.atomic():
        audit.record(
            verb,
            actor=actor,
            object_type="auth.user",
            object_id=user.pk if user is not None else "",
            object_repr=user.get_username() if user is not None else "(no such account)",
            after=after,
        )


def _path(request) -> str:
    return getattr(request, "path", "") or ""


def record_signed_in(sender, request, user, **kwargs):
    record_account_event("auth.signed_in", actor=user, user=user, after={"path": _path(request)})


def record_sign_in_failed(sender, credentials, request=None, **kwargs):
    """A wrong password or an unknown name. Attempts refused during a lockout are not recorded one by
    one (no password was checked, and the lockout's own event says when it began); axes marks them
    as locked out without counting them (``AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT`` off)."""
    if getattr(request, "axes_locked_out", False) and getattr(request, "axes_failures_since_start", None) is None:
        return
    user = _known_user(credentials.get(get_user_model().USERNAME_FIELD) or credentials.get("username"))
    record_account_event("auth.sign_in_failed", actor=None, user=user, after={"path": _path(request)})


def record_locked_out(sender, request, username, ip_address, **kwargs):
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is None:
        return  # refused again while locked out: recorded when the lockout began
    user = _known_user(username)
    record_account_event(
        "auth.locked_out",
        actor=None,
        user=user,
        after={
            "path": _path(request),
            "ip_address": ip_address,
            "failures": failures,
            "cool_off_minutes": _minutes(request),
        },
    )


def connect() -> None:
    """Connect the receivers (``TenancyConfig.ready``)."""
    uid = "tenancy.signin"
    user_logged_in.connect(record_signed_in, dispatch_uid=f"{uid}.signed_in")
    user_login_failed.connect(record_sign_in_failed, dispatch_uid=f"{uid}.failed")
    user_locked_out.connect(record_locked_out, dispatch_uid=f"{uid}.locked_out")
