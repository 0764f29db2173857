"""Capacity held for bookings as admins see it: per window (/bookings/capacity/), per day of the next week
on the fleet overview (a card registered into ``allocations.services.overview_panels``), and as demand known
ahead in the capacity what-if (a provider registered into ``allocations.placement.whatif_demand``).

Held: an occurrence not built yet (``HOLDING_STATES``) whose window has not ended. A board's worth of a
desktop is its profile's share of the board (framebuffer), or its whole GPUs, as the usage report counts.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.urls import reverse
from django.utils import timezone

from allocations.placement.shapes import shape_of
from allocations.placement.whatif import Arrival
from allocations.placement.whatif_demand import Ahead
from bookings.models import HOLDING_STATES, Occurrence
from tenancy.roles import ADMINS, roles_of

OVERVIEW_DAYS = 7


def gpus_worth(template) -> float:
    """GPUs' worth one desktop of ``template`` holds."""
    if template.profile_id:
        return template.profile.framebuffer_mib / template.profile.board_framebuffer_mib
    return float(template.gpu_count)


def held(now: datetime, until: datetime):
    """Occurrences holding capacity at some moment of [now, until), by start (one query)."""
    return (
        Occurrence.objects.filter(state__in=HOLDING_STATES, end__gt=now, start__lt=until)
        .select_related("booking__template__profile")
        .order_by("start", "pk")
    )


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def overview_panel(request, now=None) -> dict | None:
    """The overview's card: booked windows, desktops and GPUs' worth held per day of the next week (days
    in the person's zone; a window under way counts on today). None when nothing is held."""
    now = now or timezone.now()
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    days: dict = {}
    for o in held(now, today + timedelta(days=OVERVIEW_DAYS)):
        day = timezone.localtime(max(o.start, now)).date()
        row = days.setdefault(day, {"day": day, "windows": 0, "desktops": 0, "gpus": 0.0, "first": o.start})
        row["windows"] += 1
        row["desktops"] += o.booking.count
        row["gpus"] += o.booking.count * gpus_worth(o.booking.template)
    if not days:
        return None
    rows = [days[d] | {"gpus": round(days[d]["gpus"], 2)} for d in sorted(days)]
    gpus = sum(row["gpus"] for row in days.values())
    return {
        "id": "held-for-bookings",
        "title": f"Held for bookings: the next {OVERVIEW_DAYS} days",
        "template": "bookings/_overview_held.html",
        "days": rows,
        "windows": sum(r["windows"] for r in rows),
        "desktops": sum(r["desktops"] for r in rows),
        "gpus": round(gpus, 2),
        "link": reverse("bookings:capacity") if roles_of(request.user).any_of(ADMINS) else "",
    }


def booked_ahead(*, days: int, now: datetime, vcpu_milli: int) -> Ahead | None:
    """The what-if's demand known ahead: each booked window of the next ``days`` arrives at its start (from
    now; one under way, now) for the rest of its length, as many desktops as it books."""
    arrivals, windows, shapes = [], 0, {}
    for o in held(now, now + timedelta(days=days)):
        template = o.booking.template
        if template.pk not in shapes:
            shapes[template.pk] = shape_of(template, vcpu_milli)
        start = max(o.start, now)
        arrival = Arrival(
            (start - now).total_seconds(),
            f"{template.name} (booked)",
            shapes[template.pk],
            (o.end - start).total_seconds(),
        )
        arrivals += [arrival] * o.booking.count
        windows += 1
    if not arrivals:
        return None
    words = f"{_plural(windows, 'booked window')} ({_plural(len(arrivals), 'desktop')}) held for bookings"
    return Ahead("bookings", tuple(arrivals), windows, words)
