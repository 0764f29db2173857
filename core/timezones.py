"""One time zone per person: the zone the signed-in person chose (their preferences, handed over on
the request by a layer above: ``CHOSEN``), else the browser's zone (its IANA name, kept in the ``tz``
cookie by static/js/tz.js), is the zone every page of the request is rendered in, labelled (``when`` filter);
live.js and charts.js format the times they show in the same zone with the same label (base.html
hands them the zone on ``<body data-tz>``). An unknown or malformed name means UTC."""

from __future__ import annotations

import functools
import zoneinfo
from datetime import datetime, timedelta, tzinfo

from django.utils import timezone

COOKIE = "tz"
#: The request attribute where a layer above (``tenancy.middleware``) puts the zone the signed-in
#: person chose: an IANA name, or "" for the browser's. Set before ``TimezoneMiddleware`` runs.
CHOSEN = "chosen_time_zone"
UTC = zoneinfo.ZoneInfo("UTC")


@functools.cache
def _known() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_known(name: str | None) -> bool:
    """True for a name of the tz database (what a person may choose)."""
    return bool(name) and len(name) <= 64 and name in _known()


@functools.cache
def names() -> tuple[str, ...]:
    """Every name of the tz database, sorted (the choices of the account page)."""
    return tuple(sorted(_known()))


def zone_named(name: str | None) -> tzinfo:
    """The zone of that IANA name, or UTC for anything else (only names of the tz database are
    looked up, so a cookie cannot name a file)."""
    if is_known(name):
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


def zone_of(request) -> tzinfo:
    """The request's zone: the person's choice (``CHOSEN``), else the browser's (the cookie), else UTC."""
    return zone_named(getattr(request, CHOSEN, "") or request.COOKIES.get(COOKIE))


class TimezoneMiddleware:
    """Activate the person's zone (``zone_of``) for the request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        timezone.activate(zone_of(request))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
