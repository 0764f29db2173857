"""Two people booking the last slot at once on PostgreSQL, or one booking it while another asks for a
desktop that would take it: exactly one wins, the other hears why, and the fleet is never over capacity.

Each booking runs in its own thread and database connection, released together by a barrier; SQLite
serialises writers with a file lock, so this runs on PostgreSQL only (as allocations' race tests)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from allocations.models import Desktop
from allocations.services.request import request_desktop
from allocations.tests.factories import make_membership, make_template, make_tenant, make_user
from allocations.tests.test_races import assert_inventory_consistent, race
from bookings.models import CalendarLock, Occurrence
from bookings.services import book
from bookings.tests.conftest import NOW, at
from inventory.models import VGPUProfile
from tenancy.roles import Role

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL's row locks"),
]


@pytest.mark.parametrize("people", [2, 8])
def test_racing_for_the_last_booked_slot_books_it_once(board, tenant, people):
    """People of different tenants (whose quota rows do not serialise them) race for one board's window."""
    _, template = board
    CalendarLock.objects.get_or_create(name="fleet")  # as the migration leaves it (transactional tests flush it)
    tenants = [tenant, make_tenant("Other", "other", max_desktops=10, max_framebuffer_mib=10**7, max_desktop_hours=24)]
    template.allowed_tenants.add(tenants[1])
    users = []
    for i in range(people):
        user = make_user(f"booker{i}")
        make_membership(user, Role.TENANT_MEMBER, tenants[i % 2])
        users.append(user)

    outcome = race(
        [lambda u=u: book(actor=u, template_id=template.pk, start=at(2, 10), end=at(2, 12), now=NOW) for u in users]
    )

    assert outcome == Counter({"ok": 1, "NoCapacity": people - 1})
    assert Occurrence.objects.count() == 1


@pytest.mark.parametrize("attempt", range(5))
def test_a_booking_and_an_on_demand_request_racing_for_the_last_slot_one_wins(board, tenant, attempt):
    """Before: the request's hold check took no lock, so when both read before either committed, the
    booking counted the board free for its window (the request's desktop not written yet) and the request
    saw no booked window (not committed yet): both were granted, and the window could not be built."""
    _, template = board
    CalendarLock.objects.get_or_create(name="fleet")  # as the migration leaves it (transactional tests flush it)
    other = make_tenant("Other", "other", max_desktops=10, max_framebuffer_mib=10**7, max_desktop_hours=24)
    template.allowed_tenants.add(other)
    booker, asker = make_user("booker"), make_user("asker")
    make_membership(booker, Role.TENANT_MEMBER, tenant)
    make_membership(asker, Role.TENANT_MEMBER, other)  # another tenant: no quota row orders the two
    now = timezone.now().replace(microsecond=0)
    start = now + timedelta(hours=1)

    outcome = race(
        [
            lambda: book(actor=booker, template_id=template.pk, start=start, end=start + timedelta(hours=2)),
            lambda: request_desktop(actor=asker, template_id=template.pk, duration_hours=4),
        ]
    )

    assert outcome == Counter({"ok": 1, "NoCapacity": 1})
    # the one board takes one desktop at a time: the booked window or the 4-hour desktop, never both
    assert Occurrence.objects.count() + Desktop.objects.holding_capacity().count() == 1
    assert_inventory_consistent()


def test_two_requests_racing_for_room_a_booking_leaves_cannot_both_take_it(board, tenant):
    """A half-board template: the board takes two. One is booked in an hour; a 4-hour desktop now still
    leaves room for it, two do not. Two people of different tenants ask at once: one gets it. Without the
    request's exclusive hold on the calendar each counted the other's desktop as absent: both got one."""
    host, _ = board
    template = make_template("Half A40", profile=VGPUProfile.objects.get(name="A40-24Q"), tenants=[tenant], vcpus=2)
    CalendarLock.objects.get_or_create(name="fleet")
    others = [
        make_tenant(f"Other {i}", f"other{i}", max_desktops=10, max_framebuffer_mib=10**7, max_desktop_hours=24)
        for i in range(2)
    ]
    template.allowed_tenants.add(*others)
    booker = make_user("booker")
    make_membership(booker, Role.TENANT_MEMBER, tenant)
    askers = [make_user(f"asker{i}") for i in range(2)]
    for user, other in zip(askers, others, strict=True):
        make_membership(user, Role.TENANT_MEMBER, other)
    start = timezone.now().replace(microsecond=0) + timedelta(hours=1)
    book(actor=booker, template_id=template.pk, start=start, end=start + timedelta(hours=2))

    outcome = race([lambda u=u: request_desktop(actor=u, template_id=template.pk, duration_hours=4) for u in askers])

    assert outcome == Counter({"ok": 1, "NoCapacity": 1})
    assert Desktop.objects.holding_capacity().count() == 1
    assert_inventory_consistent()
