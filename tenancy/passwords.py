"""Local passwords: a reset by mail for someone who forgot theirs, and a change by someone signed in.

A reset request never says whether an address belongs to an account: the same page follows every
request. A mail goes to each active account with that address and a usable password; accounts of a
directory or an identity provider have none (they sign in there) and get no mail. Requests are
limited per address (PORTAL_PASSWORD_RESET_ADDRESS_LIMIT an hour, refused with 429 and words) and
mails per account (PORTAL_PASSWORD_RESET_ACCOUNT_LIMIT an hour: more are silently not sent, so the
limit says nothing about the account either). The mail, text and HTML, links to the portal's public
address (PORTAL_PUBLIC_URL). Every request, reset and change is audited (``auth.password_reset_requested``,
``auth.password_reset_done``, ``auth.password_changed``); a new password ends the person's other
sessions and closes their consoles and live sockets (``tenancy.sessions``)."""

from __future__ import annotations

import datetime
import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from audit.models import AuditEvent
from core.errors import PortalError
from tenancy import sessions
from tenancy.signin import client_address, record_account_event

log = logging.getLogger(__name__)

REQUESTED = "auth.password_reset_requested"
WINDOW = datetime.timedelta(hours=1)


class TooManyResets(PortalError):
    status_code = 429
    code = "too_many_requests"


def public_link(path: str) -> str:
    """``path`` (as ``reverse`` gives it) on the portal's public address, which carries any prefix."""
    return settings.PORTAL_PUBLIC_URL + "/" + path.removeprefix(get_script_prefix()).lstrip("/")


def _recent(**lookups) -> int:
    since = timezone.now() - WINDOW
    return AuditEvent.objects.filter(verb=REQUESTED, occurred_at__gte=since, **lookups).count()


def accounts_for(email: str):
    """The accounts a reset mail for ``email`` goes to: active, that address, and a local password, or
    none yet and never signed in (someone invited whose invitation link expired: the reset sets their first
    password). An account with no usable password that has signed in belongs to a directory or an
    identity provider (made at its first sign-in there): it gets no mail."""
    User = get_user_model()
    candidates = User.objects.filter(**{f"{User.get_email_field_name()}__iexact": email, "is_active": True})
    return [user for user in candidates if user.has_usable_password() or user.last_login is None]


def _send(user) -> None:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    context = {
        "user": user,
        "link": public_link(reverse("password_reset_confirm", kwargs={"uidb64": uid, "token": token})),
        "portal": settings.PORTAL_PUBLIC_URL,
        "hours": settings.PASSWORD_RESET_TIMEOUT // 3600,
    }
    subject = "".join(render_to_string("registration/password_reset_subject.txt", context).splitlines())
    text = render_to_string("registration/password_reset_email.txt", context)
    mail = EmailMultiAlternatives(subject, text, to=[user.email])  # as the account has it, not as typed
    mail.attach_alternative(render_to_string("registration/password_reset_email.html", context), "text/html")
    mail.send()


def _audit_request(user, address: str | None, outcome: str) -> None:
    record_account_event(REQUESTED, actor=None, user=user, after={"address": address or "", "outcome": outcome})


def request_reset(email: str, *, request) -> None:
    """Mail a reset link for each account of ``email`` (see the module). Raises ``TooManyResets``
    past the per-address limit; otherwise says nothing about what happened."""
    address = client_address(request)
    if address and _recent(after__address=address) >= settings.PORTAL_PASSWORD_RESET_ADDRESS_LIMIT:
        raise TooManyResets(
            "Too many password-reset requests came from your network in the last hour. Try again later; "
            "a platform admin can also set a new password for you."
        )
    accounts = accounts_for(email)
    if not accounts:
        _audit_request(None, address, "no local account")  # the address typed is not kept
        return
    for user in accounts:
        if _recent(object_type="auth.user", object_id=str(user.pk), after__outcome="mailed") >= (
            settings.PORTAL_PASSWORD_RESET_ACCOUNT_LIMIT
        ):
            _audit_request(user, address, "not mailed: account limit")
            continue
        try:
            _send(user)
        except Exception as exc:  # noqa: BLE001 - a mail server that is down must not tell who has an account
            log.warning("password reset mail for user %s not sent: %s", user.pk, exc)
            _audit_request(user, address, f"not mailed: {type(exc).__name__}")
            continue
        _audit_request(user, address, "mailed")


def password_set(user, *, verb: str, keep_session: str | None = None) -> int:
    """After ``user``'s password was set (a reset or a change): their sessions but ``keep_session`` end,
    their consoles and other live sockets close; audited as ``verb``. Returns the sessions ended."""
    with transaction.atomic():
        ended = sessions.end_sessions(user, keep=keep_session)
        record_account_event(verb, actor=user, user=user, after={"other_sessions_ended": ended})
        sessions.close_connections(user.pk, "Your password was changed.")
    return ended
