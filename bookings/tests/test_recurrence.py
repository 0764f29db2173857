"""A booking's windows from its first window and RRULE, with the caps that keep a booking bounded."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from bookings.recurrence import MAX_OCCURRENCES, weekly_rule, windows
from bookings.tests.conftest import NOW, at
from core.errors import PortalError


def test_weekly_until_includes_the_last_day():
    spans = windows(at(2, 10), at(2, 12), weekly_rule(at(23, 10)), now=NOW)
    assert [s.day for s, _ in spans] == [2, 9, 16, 23]
    assert all(e - s == timedelta(hours=2) for s, e in spans)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("FREQ=SOMETIMES", "not a valid iCalendar RRULE"),
        ("FREQ=WEEKLY", "give UNTIL or COUNT"),
        (f"FREQ=DAILY;COUNT={MAX_OCCURRENCES + 1}", f"at most {MAX_OCCURRENCES} occurrences"),
        ("FREQ=MONTHLY;COUNT=14", "at most a year ahead"),
    ],
)
def test_bad_or_unbounded_rules_are_refused_in_words(rule, message):
    with pytest.raises(PortalError) as exc:
        windows(at(2, 10), at(2, 12), rule, now=NOW)
    assert message in exc.value.message


def test_a_window_in_the_past_or_backwards_is_refused():
    with pytest.raises(PortalError, match="starts in the future"):
        windows(NOW - timedelta(hours=1), NOW, now=NOW)
    with pytest.raises(PortalError, match="ends after it starts"):
        windows(at(2, 12), at(2, 12), now=NOW)


def test_hourly_count_5_with_5h_windows_is_refused_as_overlapping():
    """Reproduction: FREQ=HOURLY;COUNT=5 with 5 h windows was accepted; each window was checked only against
    other bookings, so the booking overlapped itself."""
    with pytest.raises(PortalError, match="windows of this rule overlap"):
        windows(at(2, 10), at(2, 15), "FREQ=HOURLY;COUNT=5", now=NOW)
    assert len(windows(at(2, 10), at(2, 15), "FREQ=HOURLY;INTERVAL=5;COUNT=5", now=NOW)) == 5  # back to back


@pytest.mark.parametrize(
    "rule",
    [
        "DTSTART:20300101T090000\nRRULE:FREQ=DAILY;COUNT=2",
        "RRULE:FREQ=DAILY;COUNT=2\nRRULE:FREQ=WEEKLY;COUNT=2",
        "FREQ=DAILY;COUNT=2\nEXDATE:20270303T100000",
    ],
)
def test_a_rule_with_dtstart_or_several_lines_is_refused_not_a_naive_datetime_500(rule):
    """Reproduction: "DTSTART:20300101T090000\\nRRULE:FREQ=DAILY;COUNT=2" gave naive datetimes (a 500 later)."""
    with pytest.raises(PortalError, match="one RRULE line only"):
        windows(at(2, 10), at(2, 12), rule, now=NOW)


def test_an_rrule_prefix_is_still_accepted():
    assert len(windows(at(2, 10), at(2, 12), "rrule:FREQ=DAILY;COUNT=2", now=NOW)) == 2


def test_an_impossible_rule_is_refused_fast():
    """Reproduction: FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=30;COUNT=1 searched to the year 9999 (~8 s)."""
    began = time.monotonic()
    with pytest.raises(PortalError):
        windows(at(2, 10), at(2, 12), "FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=30;COUNT=1", now=NOW)
    assert time.monotonic() - began < 1.5


def test_until_beyond_a_year_is_still_refused():
    with pytest.raises(PortalError, match="at most a year ahead"):
        windows(at(2, 10), at(2, 12), weekly_rule(at(2, 10) + timedelta(days=400)), now=NOW)
