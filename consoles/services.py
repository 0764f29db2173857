"""Console tickets and sessions: who may open a desktop's console, the one-shot claim of a ticket,
and the bookkeeping (ConsoleSession rows, ``console.opened``/``console.closed`` audit events) of
each console from open to close. The websocket consumer calls these; they hold every rule."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from allocations.choices import DesktopStatus
from allocations.models import Desktop
from allocations.services import lifecycle
from allocations.services.access import get_desktop_for
from audit.context import audit_context
from consoles.grants import sign_grant
from consoles.models import ConsoleSession, ConsoleTicket, digest
from consoles.relay import parse_address
from core.errors import Conflict, NotFound
from tenancy.roles import may_act_for, roles_of

#: Tickets are kept this long after they expire (then pruned when new ones are issued).
KEEP_TICKETS = timedelta(hours=1)


class TicketRefused(Exception):
    """A console ticket that may not be used; ``reason`` says why (for the close frame and the log)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class IssuedTicket:
    token: str
    expires_at: datetime
    desktop: Desktop


@dataclass(frozen=True)
class ConsoleTarget:
    """What a claimed ticket opens: whose console, which desktop, and how to reach it."""

    user: object
    desktop: Desktop
    relay: tuple[str, int]
    grant: str


def not_running_message(desktop: Desktop) -> str:
    return f"The desktop is not running (status: {desktop.status})."


def issue_ticket(desktop_pk, *, actor, session_key: str | None = None) -> IssuedTicket:
    """A single-use ticket to open the console of desktop ``desktop_pk``, for ``actor`` (and their
    session, when they are signed in through the browser). Its owner and platform admins only: anyone
    else gets NotFound, as for a desktop that does not exist; Conflict when it is not running."""
    desktop = get_desktop_for(actor, desktop_pk, acting=True)
    if not may_open_console(actor, desktop):
        raise NotFound("No such desktop (it does not exist or it is not yours).")
    if desktop.status != DesktopStatus.RUNNING:
        raise Conflict(not_running_message(desktop), details={"status": desktop.status})
    token = secrets.token_urlsafe(32)  # 256 random bits; only its hash is stored
    now = timezone.now()
    expires_at = now + timedelta(seconds=settings.PORTAL_CONSOLE_TICKET_TTL_S)
    with transaction.atomic():
        ConsoleTicket.objects.filter(expires_at__lt=now - KEEP_TICKETS).delete()
        ConsoleTicket.objects.create(
            token_hash=digest(token),
            user=actor,
            desktop=desktop,
            session_hash=digest(session_key) if session_key else "",
            expires_at=expires_at,
        )
    return IssuedTicket(token=token, expires_at=expires_at, desktop=desktop)


def relay_of(desktop: Desktop) -> tuple[str, int]:
    """The address of the console relay beside the desktop's host."""
    return parse_address(desktop.host.console_relay or settings.PORTAL_CONSOLE_RELAY)


def claim_ticket(token: str, *, user, session_key: str | None) -> ConsoleTarget:
    """Use the ticket ``token`` (once) for the websocket of ``user``/``session_key``; TicketRefused
    unless it is a live, unused ticket of this user (and this session, when it was issued to one) for
    a running desktop they may still act on. The claim comes first and is final: a ticket presented
    from the wrong session is spent, so a leaked ticket cannot be tried twice."""
    if not token or len(token) > 100:
        raise TicketRefused("The console ticket is missing.")
    token_hash = digest(token)
    now = timezone.now()
    # Claimed by a conditional UPDATE: of two connections racing with the same ticket exactly one
    # touches the row.
    claimed = ConsoleTicket.objects.filter(token_hash=token_hash, used_at__isnull=True, expires_at__gt=now).update(
        used_at=now
    )
    if claimed != 1:
        raise TicketRefused("The console ticket is unknown, used or expired.")
    ticket = ConsoleTicket.objects.select_related("user", "desktop__host", "desktop__tenant").get(token_hash=token_hash)
    authenticated = user is not None and user.is_authenticated
    if ticket.session_hash:
        if not (authenticated and session_key and hmac.compare_digest(digest(session_key), ticket.session_hash)):
            raise TicketRefused("The console ticket belongs to another session.")
    if authenticated and user.pk != ticket.user_id:
        raise TicketRefused("The console ticket belongs to another user.")
    desktop = ticket.desktop
    problem = why_not_allowed(ticket.user, desktop)
    if problem:
        raise TicketRefused(problem)
    return ConsoleTarget(user=ticket.user, desktop=desktop, relay=relay_of(desktop), grant=grant_for(desktop))


def grant_for(desktop: Desktop) -> str:
    """The signed grant the desktop's console relay accepts (once, within the ticket TTL)."""
    return sign_grant(
        settings.PORTAL_CONSOLE_RELAY_KEY.encode(),
        host=desktop.host.name,
        domain=desktop.domain_name,
        desktop_id=desktop.pk,
        ttl_s=settings.PORTAL_CONSOLE_TICKET_TTL_S,
    )


def may_open_console(user, desktop: Desktop) -> bool:
    """Platform admins open any console; a desktop's owner theirs while still a member of its tenant
    (one whose membership was removed keeps the row, not the right)."""
    roles = roles_of(user)
    return roles.platform_admin or (may_act_for(user, desktop.owner_id) and desktop.tenant_id in roles.tenant_ids)


def why_not_allowed(user, desktop: Desktop) -> str:
    """Why ``user`` may not use ``desktop``'s console now, or "" when they may."""
    if not user.is_active:
        return "Your account is disabled."
    if not may_open_console(user, desktop):
        return "You may no longer use this console."
    if desktop.status != DesktopStatus.RUNNING or desktop.host_id is None:
        return not_running_message(desktop)
    return ""


def still_allowed(user_id: int, desktop_id: int) -> bool:
    """Re-read the user (roles afresh) and the desktop: may this console stay open?"""
    user = get_user_model().objects.filter(pk=user_id).first()
    desktop = Desktop.objects.filter(pk=desktop_id).first()
    return user is not None and desktop is not None and not why_not_allowed(user, desktop)


def open_session(*, user, desktop: Desktop, source_ip: str | None) -> ConsoleSession:
    """Record that ``user`` opened ``desktop``'s console from ``source_ip`` (row + ``console.opened``
    on the desktop's timeline, in one transaction)."""
    with transaction.atomic(), audit_context(source_ip=source_ip):
        session = ConsoleSession.objects.create(
            desktop=desktop, user=user, source_ip=source_ip, last_seen=timezone.now()
        )
        lifecycle.audit_desktop(
            "console.opened",
            desktop,
            actor=user,
            after={"source_ip": source_ip, "by": "owner" if desktop.owner_id == user.pk else "platform admin"},
        )
    return session


def record_progress(session_id: int, *, bytes_to_guest: int, bytes_from_guest: int) -> None:
    """The console is alive: its byte counters so far, and now as ``last_seen``."""
    ConsoleSession.objects.filter(pk=session_id, closed_at__isnull=True).update(
        last_seen=timezone.now(), bytes_to_guest=bytes_to_guest, bytes_from_guest=bytes_from_guest
    )


def close_session(session_id: int, *, code: int, reason: str, bytes_to_guest: int, bytes_from_guest: int) -> bool:
    """Record the end of a console (once: the conditional UPDATE on ``closed_at`` must touch the row)
    with ``console.closed`` on the desktop's timeline: duration, bytes each way, code and reason."""
    now = timezone.now()
    with transaction.atomic():
        closed = ConsoleSession.objects.filter(pk=session_id, closed_at__isnull=True).update(
            closed_at=now,
            last_seen=now,
            bytes_to_guest=bytes_to_guest,
            bytes_from_guest=bytes_from_guest,
            close_code=code,
            close_reason=reason[:200],
        )
        if not closed:
            return False
        session = ConsoleSession.objects.select_related("desktop__tenant", "user").get(pk=session_id)
        with audit_context(source_ip=session.source_ip):
            lifecycle.audit_desktop(
                "console.closed",
                session.desktop,
                actor=session.user,
                after={
                    "duration_s": round((now - session.opened_at).total_seconds(), 1),
                    "bytes_to_guest": bytes_to_guest,
                    "bytes_from_guest": bytes_from_guest,
                    "reason": reason,
                    "code": code,
                },
            )
    return True
