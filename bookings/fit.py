"""Does a booking fit the fleet's future? Each window is replayed through the placement engine
(``allocations.placement.whatif.replay``, the what-if's replay) on the hosts that will be there then.

For one window [start, end) the load is everything that will hold capacity at some moment of it:
desktops holding capacity now that have not expired by its start (their expiry, or their duration from
now while not started), and the other bookings' occurrences that overlap it and are not built yet
(built ones are among the desktops). Windows are half-open: one ending exactly when another starts does
not overlap it. The load is placed first, then the booking's desktops; the hosts are the online ones
less those with planned maintenance (``MaintenanceWindow``) overlapping the window. Counting the
window's whole load at once is conservative: it never says a booking fits when at some moment it would
not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from allocations.models import Desktop
from allocations.placement.shapes import shape_of
from allocations.placement.whatif import Arrival, catalog, current_fleet, replay
from bookings.models import HOLDING_STATES, MaintenanceWindow, Occurrence

MINE = "\x00booked"  # the label of the booking's own arrivals in the replay


@dataclass
class WindowFit:
    start: datetime
    end: datetime
    wanted: int
    placed: int
    reasons: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.placed >= self.wanted

    def in_words(self) -> str:
        when = f"{timezone.localtime(self.start):%a %d %b %Y %H:%M}–{timezone.localtime(self.end):%H:%M}"
        if self.fits:
            return f"{when}: fits."
        why = "; ".join(self.reasons) or "the fleet is too small for it"
        return f"{when}: only {self.placed} of {self.wanted} desktops fit ({why})."


class Future:
    """The fleet as the future-fit check reads it, once per check (hosts, catalog, desktops, planned
    maintenance), so a 200-window booking costs a handful of queries and one replay per window."""

    def __init__(self, *, now=None, exclude_booking: int | None = None, exclude_occurrence: int | None = None):
        self.now = now or timezone.now()
        self.unit = settings.PORTAL_PLACEMENT_VCPU_MILLI
        self.hosts = current_fleet()
        self.ladders = catalog()
        self._shapes: dict[int, object] = {}
        self.desktops = [
            (d.template, d.expires_at or self.now + timedelta(hours=d.duration_hours))
            for d in Desktop.objects.holding_capacity().select_related("template__profile")
        ]
        occurrences = Occurrence.objects.filter(state__in=HOLDING_STATES, end__gt=self.now)
        if exclude_booking:
            occurrences = occurrences.exclude(booking_id=exclude_booking)
        if exclude_occurrence:
            occurrences = occurrences.exclude(pk=exclude_occurrence)
        self.occurrences = list(occurrences.select_related("booking__template__profile"))
        self.maintenance = list(MaintenanceWindow.objects.filter(end__gt=self.now).select_related("host"))

    def shape(self, template):
        if template.pk not in self._shapes:
            self._shapes[template.pk] = shape_of(template, self.unit)
        return self._shapes[template.pk]

    def check(self, template, count: int, start: datetime, end: datetime, extra=()) -> WindowFit:
        """How many of ``count`` desktops of ``template`` fit in [start, end); ``extra``: (template, until)
        pairs of desktops that would also run from now (an on-demand request being weighed)."""
        span = (end - start).total_seconds()
        away = {m.host.name: m for m in self.maintenance if m.start < end and m.end > start}
        hosts = [h for h in self.hosts if h.name not in away]
        reasons = [
            f"host {name} is in planned maintenance {timezone.localtime(m.start):%d %b %H:%M}–"
            f"{timezone.localtime(m.end):%d %b %H:%M}" + (f": {m.reason}" if m.reason else "")
            for name, m in sorted(away.items())
        ]
        demand, running, booked = [], 0, {}
        for tmpl, until in [*self.desktops, *extra]:
            if until > start:
                demand.append(Arrival(0.0, "load", self.shape(tmpl), span))
                running += 1
        for o in self.occurrences:
            if o.start < end and o.end > start:
                b = o.booking
                demand += [Arrival(0.0, "load", self.shape(b.template), span)] * b.count
                booked[str(b)] = booked.get(str(b), 0) + b.count
        demand += [Arrival(0.0, MINE, self.shape(template), span)] * count
        out = replay(hosts, demand, self.ladders, policy=settings.PORTAL_PLACEMENT_POLICY, horizon_s=span)
        refused = out.by_template.get(MINE, {}).get("refused", 0)
        if refused:
            if running:
                reasons.append(f"{running} desktop(s) still running then")
            reasons += [f"{n} desktop(s) booked for {name}" for name, n in sorted(booked.items())]
            if not hosts:
                reasons.append("no host is available then")
        return WindowFit(start, end, count, count - refused, reasons)


def future_fit(template, count: int, windows, *, now=None, exclude_booking=None) -> list[WindowFit]:
    """One ``WindowFit`` per window, in order."""
    future = Future(now=now, exclude_booking=exclude_booking)
    return [future.check(template, count, s, e) for s, e in windows]


def upcoming_holds(now: datetime, until: datetime, exclude_occurrence: int | None = None):
    """Occurrences not built yet that overlap [now, until)."""
    qs = Occurrence.objects.filter(state__in=HOLDING_STATES, start__lt=until, end__gt=now)
    if exclude_occurrence:
        qs = qs.exclude(pk=exclude_occurrence)
    return qs.select_related("booking__template__profile").order_by("start")
