"""The booked windows' life, run by beat (``bookings.tasks``): build the desktops ahead of the start, give
back those not opened in time (no-show), and close the window at its end.

Desktops are built through the request service (``allocations.services.request.request_desktop``), one
per person, owned by that person: the one audited write path, its quota and placement checks included.
Each desktop's ``expires_at`` is the window's end, so the expiry warnings and the expiry sweep apply as
to any desktop. Every step claims its occurrence with a conditional update first, so a second beat
delivery does nothing.
"""

from __future__ import annotations

import math
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from allocations.choices import HOLDING_STATUSES, DesktopStatus
from allocations.exceptions import InvalidTransition
from allocations.models import Desktop
from allocations.services.lifecycle import release_desktop
from allocations.services.request import request_desktop
from bookings import services
from bookings.models import BookedDesktop, Occurrence, OccurrenceState
from consoles.models import ConsoleSession
from core.errors import PortalError


def _claim(occurrence_id: int, before: str, after: str, note: str = "") -> bool:
    return bool(Occurrence.objects.filter(pk=occurrence_id, state=before).update(state=after, note=note))


def provision_due(now=None) -> dict:
    """Build the desktops of windows starting within ``PORTAL_BOOKING_LEAD_MINUTES``."""
    now = now or timezone.now()
    soon = now + timedelta(minutes=settings.PORTAL_BOOKING_LEAD_MINUTES)
    built = refused = 0
    due = Occurrence.objects.filter(state=OccurrenceState.SCHEDULED, start__lte=soon, end__gt=now)
    for occ in due.select_related("booking__template", "booking__tenant"):
        if not _claim(occ.pk, OccurrenceState.SCHEDULED, OccurrenceState.PROVISIONED):
            continue
        booking = occ.booking
        people = list(booking.people.order_by("username")) or [booking.owner]
        # The window's own length (its end is pinned to occ.end below): asking from ``now`` (up to the
        # lead time before the start) would ask a 24 h window for 25 h, over a 24 h quota or template cap.
        hours = max(1, math.ceil((occ.end - occ.start).total_seconds() / 3600))
        problems = []
        token = services.building.set(occ.pk)
        try:
            for i in range(booking.count):
                person = people[i % len(people)]
                try:
                    desktop = request_desktop(
                        actor=person,
                        template_id=booking.template_id,
                        duration_hours=hours,
                        name=f"{booking}"[:100],
                        tenant_id=booking.tenant_id,
                    )
                except PortalError as exc:
                    BookedDesktop.objects.create(occurrence=occ, person=person, refused=exc.message[:500])
                    problems.append(exc.message)
                    continue
                with transaction.atomic():
                    BookedDesktop.objects.create(occurrence=occ, person=person, desktop=desktop)
                    Desktop.objects.filter(pk=desktop.pk).update(expires_at=occ.end)
                built += 1
        finally:
            services.building.reset(token)
        if problems and len(problems) == booking.count:
            refused += 1
            _claim(occ.pk, OccurrenceState.PROVISIONED, OccurrenceState.REFUSED, problems[0][:500])
        elif problems:
            Occurrence.objects.filter(pk=occ.pk).update(
                note=f"{len(problems)} desktop(s) not built: {problems[0]}"[:500]
            )
    return {"built": built, "refused": refused}


def hold_window_ends(now=None) -> int:
    """A booked desktop ends with its window: its expiry is moved back to the window's end once it has
    started (the start sets it from its duration), so the usual warnings and expiry apply."""
    moved = 0
    for link in BookedDesktop.objects.filter(
        occurrence__state=OccurrenceState.PROVISIONED, desktop__status=DesktopStatus.RUNNING
    ).select_related("occurrence", "desktop"):
        if link.desktop.expires_at != link.occurrence.end:
            moved += Desktop.objects.filter(pk=link.desktop_id).update(expires_at=link.occurrence.end)
    return moved


def release_no_shows(now=None) -> int:
    """Desktops whose console nobody opened within ``PORTAL_BOOKING_NO_SHOW_MINUTES`` of the start are
    given back; an occurrence whose desktops were all no-shows says no_show."""
    now = now or timezone.now()
    late = now - timedelta(minutes=settings.PORTAL_BOOKING_NO_SHOW_MINUTES)
    released = 0
    links = BookedDesktop.objects.filter(
        occurrence__state=OccurrenceState.PROVISIONED,
        occurrence__start__lte=late,
        no_show=False,
        desktop__status__in=HOLDING_STATUSES,
    ).select_related("desktop__tenant", "occurrence")
    for link in links:
        if ConsoleSession.objects.filter(desktop_id=link.desktop_id).exists():
            continue
        if not BookedDesktop.objects.filter(pk=link.pk, no_show=False).update(no_show=True):
            continue
        minutes = settings.PORTAL_BOOKING_NO_SHOW_MINUTES
        try:
            release_desktop(link.desktop, actor=None, reason=f"booked but not opened within {minutes} minutes")
            released += 1
        except InvalidTransition:
            pass
    for occ in Occurrence.objects.filter(state=OccurrenceState.PROVISIONED, start__lte=late):
        links = list(occ.desktops.filter(desktop__isnull=False))
        if links and all(x.no_show for x in links):
            _claim(occ.pk, OccurrenceState.PROVISIONED, OccurrenceState.NO_SHOW, "nobody opened the booked desktops")
    return released


def end_due(now=None) -> int:
    """Close windows that have ended: desktops still holding capacity are released, the occurrence is done;
    windows never built (no worker ran in time) are marked refused."""
    now = now or timezone.now()
    ended = 0
    for occ in Occurrence.objects.filter(
        state__in=(OccurrenceState.PROVISIONED, OccurrenceState.NO_SHOW), end__lte=now
    ):
        for link in occ.desktops.filter(desktop__status__in=HOLDING_STATUSES).select_related("desktop__tenant"):
            try:
                release_desktop(link.desktop, actor=None, reason="its booked window ended")
            except InvalidTransition:
                pass
        if _claim(occ.pk, OccurrenceState.PROVISIONED, OccurrenceState.DONE):
            ended += 1
    Occurrence.objects.filter(state=OccurrenceState.SCHEDULED, end__lte=now).update(
        state=OccurrenceState.REFUSED, note="its window passed before its desktops could be built"
    )
    return ended


def run_calendar(now=None) -> dict:
    """One beat tick: ends, no-shows, then what is due."""
    now = now or timezone.now()
    return {
        "ended": end_due(now),
        "no_shows": release_no_shows(now),
        "provision": provision_due(now),
        "window_ends": hold_window_ends(now),
    }
