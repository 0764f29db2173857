"""GPU-hours held vs used, per tenant and template, and idle capacity reclaimed per week (issue 18).

*Held*: what ``reports.usage`` charges, a desktop from ``started_at`` to ``ended_at`` (or now) clipped to
the period, at its GPU share (a vGPU at its profile's share of the board, passthrough at its GPUs);
suspended time is held (a suspended desktop keeps its claim). *Used*: the minutes in that same stretch
whose SM utilization (minute average, ``allocations.services.idle.sm_samples``) was at or above the
desktop's template threshold, each minute counted once per GPU source and only for the part of it inside
the held stretch, so used never exceeds held. Desktops without a GPU hold no GPU-hours and are left out.

*Reclaimed*: from the audit trail, per week (Monday 00:00 UTC): idle warnings, suspensions, resumes,
releases of idle desktops, and the GPU-hours those releases gave back early (the time each still had
until its expiry, at its GPU share).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from django.utils import timezone

from allocations.models import Desktop
from allocations.services.idle import sm_samples
from audit.exports import BOM, neutralise
from audit.models import AuditEvent
from reports.usage import charged_seconds, gpu_share, in_period

_PLACES = Decimal("0.001")
MINUTE = timedelta(minutes=1)
RECLAIM_VERBS = ("desktop.idle_warned", "desktop.suspended", "desktop.resumed", "desktop.reclaimed")


@dataclass
class HeldUsedLine:
    tenant: str
    template: str
    desktops: int = 0
    held_gpu_hours: Decimal = Decimal(0)
    used_gpu_hours: Decimal = Decimal(0)

    @property
    def idle_gpu_hours(self) -> Decimal:
        return self.held_gpu_hours - self.used_gpu_hours

    @property
    def used_percent(self) -> int:
        return round(100 * self.used_gpu_hours / self.held_gpu_hours) if self.held_gpu_hours else 0


def busy_seconds(samples, threshold: float, begin: datetime, stop: datetime) -> dict[str, int]:
    """Seconds of [begin, stop) in busy minutes (SM >= threshold), per source; a minute that sticks out of
    the stretch counts only for its part inside."""
    busy: dict[str, int] = defaultdict(int)
    for sample in samples:
        if sample.sm_util >= threshold:
            overlap = min(sample.t + MINUTE, stop) - max(sample.t, begin)
            busy[sample.source] += max(0, int(overlap.total_seconds()))
    return busy


def _hours(seconds: int, share: Decimal) -> Decimal:
    return Decimal(seconds) / Decimal(3600) * share


def held_vs_used(start: datetime, end: datetime, *, now: datetime | None = None) -> list[HeldUsedLine]:
    """One line per (tenant, template) with a GPU desktop held in [start, end), sorted."""
    now = now or timezone.now()
    lines: dict[tuple[str, str], HeldUsedLine] = {}
    desktops = in_period(start, end).select_related("tenant", "template", "profile").order_by("pk")
    for desktop in desktops.iterator(chunk_size=500):
        share = gpu_share(desktop)
        held = charged_seconds(desktop.started_at, desktop.ended_at, start, end, now)
        if not share or not held:
            continue
        begin = max(desktop.started_at, start)
        stop = min(desktop.ended_at or now, end, now)
        samples = sm_samples(desktop, begin - MINUTE, stop)
        busy = busy_seconds(samples, desktop.template.idle_sm_threshold_pct, begin, stop)
        per_source = share / Decimal(desktop.gpu_count if desktop.is_passthrough else 1)
        key = (desktop.tenant.slug, desktop.template.name)
        line = lines.setdefault(key, HeldUsedLine(*key))
        line.desktops += 1
        line.held_gpu_hours += _hours(held, share)
        line.used_gpu_hours += sum((_hours(s, per_source) for s in busy.values()), Decimal(0))
    for line in lines.values():
        line.held_gpu_hours = line.held_gpu_hours.quantize(_PLACES, ROUND_HALF_EVEN)
        line.used_gpu_hours = line.used_gpu_hours.quantize(_PLACES, ROUND_HALF_EVEN)
    return [lines[key] for key in sorted(lines)]


@dataclass
class ReclaimWeek:
    week: datetime  # Monday 00:00 UTC
    counts: dict = field(default_factory=lambda: dict.fromkeys(RECLAIM_VERBS, 0))
    gpu_hours_returned: Decimal = Decimal(0)


def week_of(t: datetime) -> datetime:
    day = t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def reclaimed_per_week(start: datetime, end: datetime) -> list[ReclaimWeek]:
    """The idle steps audited in [start, end), per week; releases with the GPU-hours they gave back early."""
    events = AuditEvent.objects.filter(
        verb__in=RECLAIM_VERBS, object_type="allocations.desktop", occurred_at__gte=start, occurred_at__lt=end
    ).values_list("verb", "object_id", "occurred_at", "after")
    weeks: dict[datetime, ReclaimWeek] = {}
    released: list[tuple[datetime, int, int]] = []
    for verb, object_id, occurred_at, after in events.iterator(chunk_size=1000):
        week = weeks.setdefault(week_of(occurred_at), ReclaimWeek(week_of(occurred_at)))
        week.counts[verb] += 1
        if verb == "desktop.reclaimed" and object_id.isdigit():
            released.append((week.week, int(object_id), int((after or {}).get("remaining_s") or 0)))
    shares = {
        d.pk: gpu_share(d)
        for d in Desktop.objects.filter(pk__in={pk for _, pk, _ in released}).select_related("profile")
    }
    for week, pk, remaining in released:
        weeks[week].gpu_hours_returned += _hours(remaining, shares.get(pk, Decimal(0)))
    for week in weeks.values():
        week.gpu_hours_returned = week.gpu_hours_returned.quantize(_PLACES, ROUND_HALF_EVEN)
    return [weeks[w] for w in sorted(weeks)]


def held_vs_used_csv(lines: list[HeldUsedLine], *, bom: bool = False) -> str:
    buffer = io.StringIO()
    if bom:
        buffer.write(BOM)
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["tenant", "template", "desktops", "held_gpu_hours", "used_gpu_hours", "idle_gpu_hours"])
    for line in lines:
        writer.writerow(
            [
                neutralise(line.tenant),
                neutralise(line.template),
                line.desktops,
                line.held_gpu_hours,
                line.used_gpu_hours,
                line.idle_gpu_hours,
            ]
        )
    return buffer.getvalue()
