"""A booking's windows: the first one, repeated by an iCalendar RRULE (``dateutil.rrule``), within caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dateutil.rrule import rrulestr

from core.errors import PortalError

MAX_OCCURRENCES = 200
HORIZON = timedelta(days=366)
MAX_WINDOW = timedelta(hours=24)


def weekly_rule(until: datetime) -> str:
    """The RRULE of "every week on the first window's weekday, until ``until`` (inclusive)"."""
    return f"FREQ=WEEKLY;UNTIL={until.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def windows(start: datetime, end: datetime, rule: str = "", *, now: datetime) -> list[tuple[datetime, datetime]]:
    """Every (start, end) of a booking; raises PortalError (400) in words for a bad window or rule."""
    if end <= start:
        raise PortalError("A booking ends after it starts.")
    if end - start > MAX_WINDOW:
        raise PortalError("A booked window lasts at most 24 hours.")
    if start < now:
        raise PortalError("A booking starts in the future.")
    if not rule.strip():
        return [(start, end)]
    rule = rule.strip().removeprefix("RRULE:")
    try:
        parsed = rrulestr(rule, dtstart=start)
    except (ValueError, TypeError) as exc:
        raise PortalError(f"That repeat rule is not a valid iCalendar RRULE: {exc}.") from None
    if "UNTIL" not in rule.upper() and "COUNT" not in rule.upper():
        raise PortalError("A repeat rule ends: give UNTIL or COUNT.")
    length, limit, out = end - start, start + HORIZON, []
    for first in parsed:
        if first > limit:
            raise PortalError("A booking repeats for at most a year ahead.")
        out.append((first, first + length))
        if len(out) > MAX_OCCURRENCES:
            raise PortalError(f"A booking has at most {MAX_OCCURRENCES} occurrences.")
    if not out:
        raise PortalError("That repeat rule gives no window at all.")
    return out
