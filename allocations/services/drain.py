"""Force-draining a host: its desktops are told, then stopped at the time the admin states.

``drain_host`` puts the host in maintenance (``inventory.services.hosts.start_drain``: nothing new is
placed there) and, in the same transaction, marks every desktop still on it with the admin's reason
and moves its end to the stop time if that comes first (``expires_at = min(expires_at, stop_at)``;
one still being built gets it when it starts, ``lifecycle.expiry_for``). Each owner is told at once,
live (``desktop.drain`` to their own group) and on the desktop's page and timeline
(``desktop.drain_notice``). The expiry sweep then warns and stops them like any desktop whose time is
up, except that the end says why: "its host was drained: <reason>" (``EndReason.DRAINED``), and open
consoles close with "The host was drained: <reason>." A stop time of now ("end now") stops them at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from allocations.choices import DesktopStatus, EndReason
from allocations.exceptions import InvalidTransition
from allocations.models import Desktop
from allocations.services import lifecycle
from core import live
from core.errors import PortalError
from inventory.models import Host
from inventory.services import hosts

#: A stop time this far in the past is taken as a mistake, not as "now" (clocks and forms lag a little).
PAST_SLACK = timedelta(minutes=1)
#: The latest a drain may stop its desktops: no desktop lasts longer than this anyway.
MAX_AHEAD = timedelta(days=90)
MAX_REASON = 500


@dataclass
class DrainResult:
    host: Host
    stop_at: datetime
    notified: list[int] = field(default_factory=list)  # desktops told (their ids)
    stopped: list[int] = field(default_factory=list)  # desktops stopped at once (stop time = now)


def check_stop_at(stop_at: datetime, now: datetime) -> datetime:
    """The stop time a drain uses: ``stop_at``, or now if it lies just before now; refused in words when it
    is in the past or absurdly far ahead."""
    if stop_at < now - PAST_SLACK:
        raise PortalError("The stop time is in the past: choose now or later.", details={"field": "stop_at"})
    if stop_at > now + MAX_AHEAD:
        raise PortalError("The stop time is more than 90 days away.", details={"field": "stop_at"})
    return max(stop_at, now)


def drain_host(host: Host, *, reason: str, stop_at: datetime, actor) -> DrainResult:
    """Drain ``host``: see the module. Returns which desktops were told and which were stopped at once."""
    reason = " ".join(reason.split())[:MAX_REASON]
    if not reason:
        raise PortalError("Say why the host is drained: its desktops' owners are shown the reason.")
    now = timezone.now()
    stop_at = check_stop_at(stop_at, now)
    with transaction.atomic():
        host = hosts.start_drain(host, reason=reason, stop_at=stop_at, actor=actor)
        result = DrainResult(host=host, stop_at=stop_at)
        on_host = Desktop.objects.filter(host=host).holding_capacity().exclude(status=DesktopStatus.STOPPING)
        for desktop in on_host.select_for_update(of=("self",)).select_related("tenant").order_by("pk"):
            _notify(desktop, host, reason=reason, stop_at=stop_at, actor=actor)
            result.notified.append(desktop.pk)
    if stop_at <= now:
        result.stopped = _stop_now(result.notified, actor=actor)
    return result


def _notify(desktop: Desktop, host: Host, *, reason: str, stop_at: datetime, actor) -> None:
    """Mark one desktop drained and tell its owner (audited on its timeline, pushed after commit)."""
    before = {"expires_at": desktop.expires_at}
    desktop.drain_reason = reason
    if desktop.expires_at is not None and stop_at < desktop.expires_at:
        desktop.expires_at = stop_at
    desktop.save(update_fields=["drain_reason", "expires_at"])
    words = f"its host is being drained: {reason}"  # the stop time is shown beside it, in the reader's zone
    lifecycle.record_desktop_event(
        desktop,
        "desktop.drain_notice",
        actor=actor,
        before=before,
        after={"reason": words, "drain_reason": reason, "stop_at": stop_at, "expires_at": desktop.expires_at},
    )
    payload = {
        "id": desktop.pk,
        "name": desktop.name,
        "reason": reason,
        "stop_at": stop_at.isoformat(),
        "expires_at": desktop.expires_at.isoformat() if desktop.expires_at else None,
    }
    live.publish_on_commit([live.user_group(desktop.owner_id), live.OPERATORS], "desktop.drain", payload)


def _stop_now(desktop_ids: list[int], *, actor) -> list[int]:
    """ "End now": release the drained desktops at once (running or still being built), each saying why."""
    stopped = []
    for desktop in Desktop.objects.filter(pk__in=desktop_ids).holding_capacity().select_related("host"):
        if desktop.status == DesktopStatus.STOPPING:
            continue
        try:
            lifecycle.release_desktop(
                desktop, actor=actor, end_reason=EndReason.DRAINED, reason=lifecycle.drained_reason(desktop)
            )
        except InvalidTransition:
            continue  # ended meanwhile
        stopped.append(desktop.pk)
    return stopped
