"""A booking's windows: the first one, repeated by an iCalendar RRULE (``dateutil.rrule``), within caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dateutil.rrule import YEARLY, rrulestr
from dateutil.rrule import rrule as RRule

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
    rule = rule.strip()
    if rule[:6].upper() == "RRULE:":
        rule = rule[6:]
    if "\n" in rule or "\r" in rule or ":" in rule or "DTSTART" in rule.upper():
        # One RRULE line only: the first window is the start; a DTSTART (or a second line) would give
        # windows without a time zone.
        raise PortalError("Give one RRULE line only (FREQ=...;COUNT=... or UNTIL=...), without DTSTART.")
    try:
        parsed = rrulestr(rule, dtstart=start)
    except (ValueError, TypeError) as exc:
        raise PortalError(f"That repeat rule is not a valid iCalendar RRULE: {exc}.") from None
    if not isinstance(parsed, RRule):
        raise PortalError("Give one RRULE line only (FREQ=...;COUNT=... or UNTIL=...), without DTSTART.")
    if "UNTIL" not in rule.upper() and "COUNT" not in rule.upper():
        raise PortalError("A repeat rule ends: give UNTIL or COUNT.")
    length, limit, out = end - start, start + HORIZON, []
    if not _has_a_day_within(parsed, start, limit):
        raise PortalError("That repeat rule gives no window at all within a year.")
    count, until = parsed._count, parsed._until
    # Iterate up to the horizon only: an impossible rule (30 February, every minute) would otherwise be
    # searched to the year 9999. COUNT is applied here, not by dateutil (UNTIL and COUNT do not mix).
    for first in parsed.replace(count=None, until=limit if until is None else min(until, limit)):
        if out and first < out[-1][1]:
            raise PortalError(
                f"The windows of this rule overlap: one starts at {first:%Y-%m-%d %H:%M} UTC before the one "
                f"before it ends ({out[-1][1]:%Y-%m-%d %H:%M} UTC). Make the windows shorter or repeat less often."
            )
        out.append((first, first + length))
        if len(out) > MAX_OCCURRENCES:
            raise PortalError(f"A booking has at most {MAX_OCCURRENCES} occurrences.")
        if count is not None and len(out) >= count:
            break
    if count is not None and len(out) < count:
        raise PortalError("A booking repeats for at most a year ahead.")
    if until is not None and until > limit:
        further = parsed.replace(count=None, until=min(until, limit + 4 * HORIZON))
        if further.after(limit) is not None:
            raise PortalError("A booking repeats for at most a year ahead.")
    if not out:
        raise PortalError("That repeat rule gives no window at all.")
    return out


def _has_a_day_within(parsed: RRule, start: datetime, limit: datetime) -> bool:
    """Whether any day up to ``limit`` passes the rule's day filters, checked a year at a time.

    dateutil walks a rule whose days never match (30 February, every minute) day by day up to the year
    9999 (seconds), checking UNTIL only on matching days; this probe, with the same day filters (nth
    weekdays as plain weekdays, BYSETPOS left out: a superset of the rule's days), takes milliseconds."""
    weekdays = set(parsed._byweekday or ()) | {wd for wd, _ in parsed._bynweekday or ()}
    probe = RRule(
        YEARLY,
        dtstart=start.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0),
        until=limit,
        bymonth=parsed._bymonth,
        bymonthday=tuple(parsed._bymonthday) + tuple(parsed._bynmonthday) or None,
        byyearday=parsed._byyearday,
        byweekno=parsed._byweekno,
        byweekday=tuple(weekdays) or None,
        byeaster=parsed._byeaster,
        byhour=0,
        byminute=0,
        bysecond=0,
    )
    return probe.after(start.replace(hour=0, minute=0, second=0, microsecond=0), inc=True) is not None
