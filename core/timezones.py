"""One time zone per person: the browser's zone (its IANA name, kept in the ``tz`` cookie by
static/js/tz.js) is the zone every page of the request is rendered in, labelled (``when`` filter);
live.js and charts.js format the times they show in the same zone with the same label (base.html
hands them the zone on ``<body data-tz>``). An unknown or malformed name means UTC."""

from __future__ import annotations

import functools
import zoneinfo
from datetime import datetime, timedelta, tzinfo

from django.utils import timezone

COOKIE = "tz"
UTC = zoneinfo.ZoneInfo("UTC")


@functools.cache
def _known() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone_named(name: str | None) -> tzinfo:
    """The zone of that IANA name, or UTC for anything else (only names of the tz database are
    looked up, so a cookie cannot name a file)."""
    if name and len(name) <= 64 and name in _known():
        return zoneinfo.ZoneInfo(name)
    return UTC


def label(moment: datetime) -> str:
    """The zone's label at an aware local ``moment``: its abbreviation where the tz database has a
    word for it ("CET", "EST", "UTC"), else its offset ("UTC+04:00"). tz.js labels the same way."""
    name = moment.tzname() or ""
    if name.isalpha():
        return name
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


class TimezoneMiddleware:
    """Activate the person's zone (the ``tz`` cookie) for the request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        timezone.activate(zone_named(request.COOKIES.get(COOKIE)))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
