"""Usage for showback and chargeback: GPU-hours and framebuffer-hours from the allocation history.

A desktop is charged from ``started_at`` to ``ended_at`` (or now), clipped to the period.
GPU-hours count a vGPU at its profile's share of the board (an A40-8Q is 8/48 of an A40)
and a passthrough desktop at its whole GPUs; framebuffer-hours are GiB-hours. The
allocation export carries every figure used here, so a report can be recomputed from it.
"""

from __future__ import annotations

import bisect
import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from django.db.models import Q
from django.utils import timezone

from allocations.models import Desktop
from audit.exports import BOM, neutralise
from core.datetimes import InvalidInstant, in_range
from core.errors import PortalError

GROUPS = ("tenant", "user", "profile", "host")
_PLACES = Decimal("0.000001")


def gpu_share(desktop: Desktop) -> Decimal:
    if desktop.profile_id:
        return (Decimal(desktop.profile.framebuffer_mib) / Decimal(desktop.profile.board_framebuffer_mib)).quantize(
            _PLACES, ROUND_HALF_EVEN
        )
    return Decimal(desktop.gpu_count)


def charged_seconds(started_at, ended_at, start: datetime, end: datetime, now: datetime) -> int:
    if started_at is None:
        return 0
    stop = min(ended_at or now, end, now)
    begin = max(started_at, start)
    return max(0, int((stop - begin).total_seconds()))


def allocation_rows(queryset):
    """The export rows of desktops, read in chunks (constant memory)."""
    for d in (
        queryset.select_related("tenant", "owner", "template", "profile", "host")
        .prefetch_related("gpus")
        .order_by("id")
        .iterator(chunk_size=1000)
    ):
        yield {
            "desktop_id": d.pk,
            "name": d.name,
            "tenant": d.tenant.slug,
            "user": d.owner.get_username(),
            "template": d.template.name,
            "profile": d.profile.name if d.profile_id else "",
            "gpu_count": d.gpu_count,
            "gpu_share": str(gpu_share(d)),
            "framebuffer_mib": d.framebuffer_mib,
            "gpu_uuids": " ".join(g.uuid or g.pci_address for g in d.gpus.all()),
            "host": d.host.name if d.host_id else "",
            "requested_at": d.requested_at,
            "started_at": d.started_at,
            "ended_at": d.ended_at,
            "status": d.status,
            "end_reason": d.end_reason,
        }


ALLOCATION_COLUMNS = [
    "desktop_id",
    "name",
    "tenant",
    "user",
    "template",
    "profile",
    "gpu_count",
    "gpu_share",
    "framebuffer_mib",
    "gpu_uuids",
    "host",
    "requested_at",
    "started_at",
    "ended_at",
    "status",
    "end_reason",
]


@dataclass
class UsageLine:
    key: str
    desktops: int
    seconds: int
    gpu_hours: Decimal
    framebuffer_gib_hours: Decimal


def in_period(start: datetime, end: datetime):
    return Desktop.objects.filter(started_at__isnull=False, started_at__lt=end).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gt=start)
    )


def line_figures(share: Decimal, framebuffer_mib: int, seconds: int) -> tuple[Decimal, Decimal]:
    hours = Decimal(seconds) / Decimal(3600)
    return (
        (hours * share).quantize(_PLACES, ROUND_HALF_EVEN),
        (hours * Decimal(framebuffer_mib) / Decimal(1024)).quantize(_PLACES, ROUND_HALF_EVEN),
    )


def usage_report(start: datetime, end: datetime, group_by: str, *, now: datetime | None = None) -> list[UsageLine]:
    if group_by not in GROUPS:
        raise ValueError(f"group by one of {', '.join(GROUPS)}")
    now = now or timezone.now()
    totals: dict[str, list] = defaultdict(lambda: [0, 0, Decimal(0), Decimal(0)])
    for row in allocation_rows(in_period(start, end)):
        seconds = charged_seconds(row["started_at"], row["ended_at"], start, end, now)
        gpu_hours, fb_hours = line_figures(Decimal(row["gpu_share"]), row["framebuffer_mib"], seconds)
        key = (row["profile"] or "passthrough") if group_by == "profile" else row[group_by]
        total = totals[key]
        total[0] += 1
        total[1] += seconds
        total[2] += gpu_hours
        total[3] += fb_hours
    return [UsageLine(k, *v) for k, v in sorted(totals.items())]


def parse_period(params) -> tuple[datetime, datetime, str]:
    """``period=YYYY-MM`` (default: this month) or ``start``/``end`` ISO dates → an aware [start, end)."""
    tz = timezone.get_current_timezone()
    try:
        if params.get("start") and params.get("end"):
            start = datetime.fromisoformat(params["start"])
            end = datetime.fromisoformat(params["end"])
            label = f"{params['start']} – {params['end']}"
        else:
            now = timezone.now()
            period = params.get("period") or f"{now.year:04d}-{now.month:02d}"
            year, month = (int(x) for x in period.split("-"))
            start = datetime(year, month, 1)
            end = datetime(year + (month == 12), month % 12 + 1, 1)
            label = period
    except ValueError:
        raise PortalError("period is YYYY-MM, or give start and end as ISO dates (2026-11-01).") from None
    try:  # core.datetimes: an instant out of range once in UTC (9999-12-31T23:59:59-23:59) is refused in words
        start = in_range(start if timezone.is_aware(start) else timezone.make_aware(start, tz))
        end = in_range(end if timezone.is_aware(end) else timezone.make_aware(end, tz))
    except (InvalidInstant, OverflowError):
        raise PortalError("start and end must lie in years 1 to 9999 (in UTC).") from None
    if end <= start:
        raise PortalError("end must be after start.")
    return start, end, label


#: Periods up to this many days are charted per day; longer ones per week.
DAILY_UP_TO = 62
#: The series the usage charts draw, whatever the table is grouped by.
CHARTED = ("tenant", "profile")


def buckets(start: datetime, end: datetime) -> list[datetime]:
    """The edges of the charts' buckets over [start, end): local midnights in the current zone (a day
    is 23 or 25 hours across a DST change), every 7th for a long period; first ``start``, last ``end``."""
    tz = timezone.get_current_timezone()
    step = timedelta(days=1 if (end - start).days <= DAILY_UP_TO else 7)
    edges, day = [start], timezone.localtime(start, tz).date() + step
    while (edge := timezone.make_aware(datetime.combine(day, time.min), tz)) < end:
        edges.append(edge)
        day += step
    return [*edges, end]


def usage_series(start: datetime, end: datetime, *, now: datetime | None = None) -> dict:
    """GPU-hours per tenant and per profile in each day (each week, for a long period) of [start, end),
    charged as ``usage_report`` charges them: {"t": [bucket starts, epoch seconds], "step": "day" | "week",
    "tenant": [{"key": …, "gpu_hours": [per bucket]}], "profile": […]}."""
    now = now or timezone.now()
    edges = buckets(start, end)
    width = len(edges) - 1
    totals = {name: defaultdict(lambda: [Decimal(0)] * width) for name in CHARTED}
    for row in allocation_rows(in_period(start, end)):
        first = max(0, bisect.bisect_right(edges, row["started_at"]) - 1)
        last = min(width, bisect.bisect_left(edges, min(row["ended_at"] or now, end)))
        keys = {"tenant": row["tenant"], "profile": row["profile"] or "passthrough"}
        for i in range(first, last):
            seconds = charged_seconds(row["started_at"], row["ended_at"], edges[i], edges[i + 1], now)
            if seconds:
                gpu_hours, _ = line_figures(Decimal(row["gpu_share"]), row["framebuffer_mib"], seconds)
                for name in CHARTED:
                    totals[name][keys[name]][i] += gpu_hours
    series = {
        name: [{"key": key, "gpu_hours": [round(float(v), 3) for v in values]} for key, values in sorted(by.items())]
        for name, by in totals.items()
    }
    step = "day" if (end - start).days <= DAILY_UP_TO else "week"
    return {"t": [int(edge.timestamp()) for edge in edges[:-1]], "step": step, **series}


def usage_csv(lines, group_by: str, *, bom: bool = False) -> str:
    buffer = io.StringIO()
    if bom:
        buffer.write(BOM)  # spreadsheets read it as UTF-8
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([group_by, "desktops", "seconds", "gpu_hours", "framebuffer_gib_hours"])
    for line in lines:
        writer.writerow([neutralise(line.key), line.desktops, line.seconds, line.gpu_hours, line.framebuffer_gib_hours])
    return buffer.getvalue()
