"""A booking's windows from its first window and RRULE, with the caps that keep a booking bounded."""

from __future__ import annotations

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
