"""The future-fit check against hand-made cases: one A40 board that holds one whole-board desktop."""

from __future__ import annotations

import pytest

from allocations.exceptions import NoCapacity
from bookings.models import MaintenanceWindow, Occurrence
from bookings.services import book
from bookings.tests.conftest import NOW, at


def test_a_window_ending_exactly_when_another_starts_fits(board, tenant_member):
    _, template = board
    book(actor=tenant_member, template_id=template.pk, start=at(2, 10), end=at(2, 12), now=NOW)
    second = book(actor=tenant_member, template_id=template.pk, start=at(2, 12), end=at(2, 14), now=NOW)
    assert second.occurrences.count() == 1


def test_an_overlapping_window_is_refused_and_named(board, tenant_member):
    _, template = board
    book(actor=tenant_member, template_id=template.pk, start=at(2, 10), end=at(2, 12), now=NOW)
    with pytest.raises(NoCapacity) as exc:
        book(actor=tenant_member, template_id=template.pk, start=at(2, 11, 59), end=at(2, 13), now=NOW)
    assert "Tue 02 Mar 2027 11:59–13:00: only 0 of 1 desktops fit" in exc.value.message
    assert "1 desktop(s) booked for Full A40 × 1" in exc.value.message
    assert Occurrence.objects.count() == 1


def test_recurring_booking_names_only_the_weeks_that_clash(board, tenant_member):
    _, template = board
    book(actor=tenant_member, template_id=template.pk, start=at(16, 10), end=at(16, 12), now=NOW)  # week 3
    with pytest.raises(NoCapacity) as exc:
        book(
            actor=tenant_member,
            template_id=template.pk,
            start=at(2, 11),
            end=at(2, 13),
            rrule="FREQ=WEEKLY;COUNT=4",
            now=NOW,
        )
    assert exc.value.message.startswith("1 of 4 window(s) do not fit: Tue 16 Mar 2027 11:00–13:00")
    assert [w["start"][:10] for w in exc.value.details["windows"]] == ["2027-03-16"]


def test_a_host_in_maintenance_during_one_occurrence_names_that_occurrence(board, tenant_member):
    host, template = board
    MaintenanceWindow.objects.create(host=host, start=at(9, 0), end=at(9, 23), reason="firmware")
    with pytest.raises(NoCapacity) as exc:
        book(
            actor=tenant_member,
            template_id=template.pk,
            start=at(2, 10),
            end=at(2, 12),
            rrule="FREQ=WEEKLY;COUNT=3",
            now=NOW,
        )
    message = exc.value.message
    assert "1 of 3 window(s) do not fit: Tue 09 Mar 2027 10:00–12:00" in message
    assert "host lab-a40 is in planned maintenance 09 Mar 00:00–09 Mar 23:00: firmware" in message


def test_maintenance_ending_when_the_window_starts_does_not_count(board, tenant_member):
    host, template = board
    MaintenanceWindow.objects.create(host=host, start=at(2, 6), end=at(2, 10))
    assert book(actor=tenant_member, template_id=template.pk, start=at(2, 10), end=at(2, 12), now=NOW).pk
