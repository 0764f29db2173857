"""Two people booking the last slot at once on PostgreSQL: exactly one wins, the other hears why.

Each booking runs in its own thread and database connection, released together by a barrier; SQLite
serialises writers with a file lock, so this runs on PostgreSQL only (as allocations' race tests)."""

from __future__ import annotations

from collections import Counter

import pytest
from django.db import connection

from allocations.tests.factories import make_membership, make_tenant, make_user
from allocations.tests.test_races import race
from bookings.models import CalendarLock, Occurrence
from bookings.services import book
from bookings.tests.conftest import NOW, at
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
