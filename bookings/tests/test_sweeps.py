"""The booked window's life with time moved by the test: built ahead, handed to its people, ended at the
window's end, and given back when nobody opened it (no-show)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from allocations.choices import DesktopStatus
from allocations.models import Desktop
from allocations.tests.factories import make_membership, make_user
from bookings.models import BookedDesktop, Occurrence, OccurrenceState
from bookings.services import book
from bookings.sweeps import run_calendar
from consoles.models import ConsoleSession
from tenancy.roles import Role


def _booking(board, tenant, actor, people=None):
    _, template = board
    start = timezone.now().replace(microsecond=0) + timedelta(days=1)
    booking = book(
        actor=actor,
        template_id=template.pk,
        start=start,
        end=start + timedelta(hours=2),
        people=people,
        tenant_id=tenant.pk,
    )
    return booking, start


def test_desktops_are_built_ahead_for_their_people_and_end_with_the_window(board, tenant, platform_admin, settings):
    settings.PORTAL_BOOKING_LEAD_MINUTES = 10
    bob = make_user("bob")
    make_membership(bob, Role.TENANT_MEMBER, tenant)
    booking, start = _booking(board, tenant, platform_admin, people=[bob.pk])

    assert run_calendar(now=start - timedelta(minutes=11))["provision"] == {"built": 0, "refused": 0}
    assert run_calendar(now=start - timedelta(minutes=10))["provision"] == {"built": 1, "refused": 0}
    assert run_calendar(now=start - timedelta(minutes=9))["provision"] == {"built": 0, "refused": 0}  # once
    occurrence = Occurrence.objects.get()
    assert occurrence.state == OccurrenceState.PROVISIONED
    desktop = BookedDesktop.objects.get().desktop
    assert (desktop.owner, desktop.expires_at) == (bob, start + timedelta(hours=2))

    Desktop.objects.filter(pk=desktop.pk).update(status=DesktopStatus.RUNNING, expires_at=start + timedelta(hours=3))
    ConsoleSession.objects.create(desktop=desktop, user=bob, last_seen=start)
    ticks = run_calendar(now=start + timedelta(minutes=30))
    assert (ticks["no_shows"], ticks["window_ends"]) == (0, 1)  # opened: kept; its end is the window's
    assert Desktop.objects.get(pk=desktop.pk).expires_at == start + timedelta(hours=2)

    assert run_calendar(now=start + timedelta(hours=2))["ended"] == 1
    occurrence.refresh_from_db()
    assert occurrence.state == OccurrenceState.DONE
    assert Desktop.objects.get(pk=desktop.pk).status == DesktopStatus.STOPPING


def test_a_booked_desktop_not_opened_in_time_is_given_back_as_a_no_show(board, tenant, tenant_member, settings):
    settings.PORTAL_BOOKING_NO_SHOW_MINUTES = 15
    booking, start = _booking(board, tenant, tenant_member)
    run_calendar(now=start - timedelta(minutes=5))
    desktop = BookedDesktop.objects.get().desktop
    Desktop.objects.filter(pk=desktop.pk).update(status=DesktopStatus.RUNNING)

    assert run_calendar(now=start + timedelta(minutes=14))["no_shows"] == 0
    assert run_calendar(now=start + timedelta(minutes=15))["no_shows"] == 1
    occurrence = Occurrence.objects.get()
    assert (occurrence.state, occurrence.note) == (OccurrenceState.NO_SHOW, "nobody opened the booked desktops")
    desktop.refresh_from_db()
    assert desktop.status == DesktopStatus.STOPPING
    assert "not opened within 15 minutes" in desktop.status_reason
    assert run_calendar(now=start + timedelta(minutes=16))["no_shows"] == 0  # a second tick does nothing


def test_a_24h_window_is_built_within_a_24h_limit_when_provisioned_lead_minutes_early(
    board, tenant, tenant_member, settings
):
    """Reproduction: a 24 h window provisioned 10 minutes ahead asked for ceil(end - now) = 25 h and was
    refused by the tenant's 24 h max_desktop_hours."""
    settings.PORTAL_BOOKING_LEAD_MINUTES = 10
    _, template = board
    start = timezone.now().replace(microsecond=0) + timedelta(days=1)
    book(
        actor=tenant_member, template_id=template.pk, start=start, end=start + timedelta(hours=24), tenant_id=tenant.pk
    )
    assert run_calendar(now=start - timedelta(minutes=10))["provision"] == {"built": 1, "refused": 0}
    link = BookedDesktop.objects.get()
    assert link.refused == ""
    assert link.desktop.expires_at == start + timedelta(hours=24)


def test_extending_a_booked_desktop_is_refused_in_words_not_silently_undone(board, tenant, platform_admin, settings):
    """Review finding: extend_desktop (the expiry notification's one-click extend) succeeded, was audited
    and charged the monthly hours, and the calendar sweep put the expiry back to the window's end a minute
    later. A booked desktop ends with its window; extending it is refused."""
    import pytest

    from allocations.exceptions import InvalidTransition
    from allocations.services.lifecycle import extend_desktop

    settings.PORTAL_BOOKING_LEAD_MINUTES = 10
    bob = make_user("bob")
    make_membership(bob, Role.TENANT_MEMBER, tenant)
    _, start = _booking(board, tenant, platform_admin, people=[bob.pk])
    run_calendar(now=start - timedelta(minutes=10))
    desktop = BookedDesktop.objects.get().desktop
    Desktop.objects.filter(pk=desktop.pk).update(status=DesktopStatus.RUNNING)

    with pytest.raises(InvalidTransition, match="ends with the window and cannot be extended"):
        extend_desktop(desktop, 1, actor=bob)
    assert Desktop.objects.get(pk=desktop.pk).duration_hours == desktop.duration_hours
