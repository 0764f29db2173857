"""Capacity held for bookings, visible to admins (issue 18): a card on the fleet overview (the next 7 days,
per day in the person's zone) and the booked windows ahead in the capacity what-if's replay. With no
booking neither page changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from allocations.placement import whatif, whatif_demand
from allocations.placement.whatif import Scenario
from allocations.tests.factories import make_template
from bookings.held import booked_ahead
from bookings.services import book
from inventory.models import VGPUProfile

pytestmark = pytest.mark.django_db


def tomorrow_at(hour: int) -> datetime:
    """Tomorrow at ``hour`` UTC (the test client's zone when it sends no ``tz`` cookie)."""
    day = timezone.now().astimezone(UTC) + timedelta(days=1)
    return day.replace(hour=hour, minute=0, second=0, microsecond=0)


@pytest.fixture
def sixth(board, tenant):
    """A sixth of the board (A40-8Q): six desktops fit it at once."""
    return make_template("Small A40", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant], vcpus=1)


def book_group(admin, member, template, start, *, count: int, rrule: str = ""):
    return book(
        actor=admin,
        template_id=template.pk,
        start=start,
        end=start + timedelta(hours=2),
        rrule=rrule,
        count=count,
        people=[member.pk],
        tenant_id=template.allowed_tenants.get().pk,
    )


def card(client, user) -> str:
    client.force_login(user)
    page = client.get("/inventory/").content.decode()
    return page.split('id="held-for-bookings"')[1].split("</section>")[0] if 'id="held-for-bookings"' in page else ""


def test_the_overview_shows_what_is_held_per_day_of_the_next_week(
    client, board, sixth, tenant_member, platform_admin, auditor
):
    _, whole = board
    start = tomorrow_at(10)
    book(actor=tenant_member, template_id=whole.pk, start=start, end=start + timedelta(hours=2))  # 1 GPU
    book_group(platform_admin, tenant_member, sixth, start + timedelta(hours=3), count=4, rrule="FREQ=DAILY;COUNT=2")
    book_group(platform_admin, tenant_member, sixth, start + timedelta(days=9), count=2)  # beyond the week

    held = card(client, platform_admin)

    assert "<h2>Held for bookings: the next 7 days</h2>" in held
    assert "3 booked windows hold 9 desktops, 2.33 GPUs' worth" in held  # 1 whole board + 8 × 1/6
    day1, day2 = start.date(), (start + timedelta(days=1)).date()
    assert f'<tr data-day="{day1:%Y-%m-%d}"><td>{start:%a %-d %b}</td><td>2</td><td>5</td><td>1.67</td>' in held
    assert f'<tr data-day="{day2:%Y-%m-%d}">' in held and held.count("<tr data-day=") == 2
    assert 'href="/bookings/capacity/"' in held
    assert "<h2>Held for bookings" in card(client, auditor) and "/bookings/capacity/" not in card(client, auditor)


def test_the_overview_counts_days_in_the_persons_zone(client, board, tenant_member, platform_admin):
    _, whole = board
    start = tomorrow_at(22)  # 22:00 UTC is 11:00 the next day in Auckland (UTC+13 in summer, +12 in winter)
    book(actor=tenant_member, template_id=whole.pk, start=start, end=start + timedelta(hours=1))
    client.cookies["tz"] = "Pacific/Auckland"
    held = card(client, platform_admin)
    assert f'data-day="{start + timedelta(days=1):%Y-%m-%d}"' in held and "NZ" in held


def test_without_bookings_the_overview_has_no_card_and_costs_the_same(client, board, tenant_member, platform_admin):
    client.force_login(platform_admin)
    client.get("/inventory/")
    assert 'id="held-for-bookings"' not in client.get("/inventory/").content.decode()
    with CaptureQueriesContext(connection) as none:
        client.get("/inventory/")
    _, whole = board
    start = tomorrow_at(10)
    book(
        actor=tenant_member,
        template_id=whole.pk,
        start=start,
        end=start + timedelta(hours=1),
        rrule="FREQ=DAILY;COUNT=5",
    )
    with CaptureQueriesContext(connection) as five:
        assert "5 booked windows" in client.get("/inventory/").content.decode()
    assert len(five.captured_queries) == len(none.captured_queries)  # one query for any number of windows


def test_booked_windows_arrive_in_the_replay_at_their_start_from_now_for_their_length(
    board, sixth, tenant_member, platform_admin
):
    now = timezone.now()
    start = (now + timedelta(days=2)).replace(microsecond=0)
    book_group(platform_admin, tenant_member, sixth, start, count=3, rrule="FREQ=WEEKLY;COUNT=3")
    ahead = booked_ahead(days=10, now=now, vcpu_milli=1000)  # the third window is 16 days away
    assert (ahead.windows, len(ahead.arrivals)) == (2, 6)
    assert ahead.words == "2 booked windows (6 desktops) held for bookings"
    first, second = start - now, start + timedelta(days=7) - now
    assert sorted({a.at_s for a in ahead.arrivals}) == [first.total_seconds(), second.total_seconds()]
    assert {a.duration_s for a in ahead.arrivals} == {7200.0}
    assert {a.template for a in ahead.arrivals} == {"Small A40 (booked)"}


def test_the_whatif_replays_the_booked_desktops_and_says_so(client, api, board, sixth, tenant_member, platform_admin):
    start = tomorrow_at(10)
    book_group(platform_admin, tenant_member, sixth, start, count=3, rrule="FREQ=DAILY;COUNT=2")

    result = whatif_demand.run_whatif(Scenario())

    assert result["before"]["requests"] == 6 and result["before"]["refused"] == 0
    assert result["ahead"] == [
        {"kind": "bookings", "windows": 2, "desktops": 6, "words": "2 booked windows (6 desktops) held for bookings"}
    ]
    assert result["templates"] == [
        {"template": "Small A40 (booked)", "requests": 6, "refused_before": 0, "refused_after": 0}
    ]
    assert "the last 30 days' 0 requests" in result["summary"]
    assert "The 6 requests replayed include 2 booked windows (6 desktops) held for bookings" in result["summary"]
    client.force_login(platform_admin)
    page = client.post("/capacity/what-if/", {"days": "30", "scale": "1"}).content.decode()
    assert "Demand: 6 requests replayed, including 2 booked windows (6 desktops) held for bookings." in page
    body = api.as_user(platform_admin).post("/api/capacity/what-if/", {}, format="json").json()
    assert body["ahead"][0]["desktops"] == 6


def test_without_bookings_the_whatif_is_unchanged(client, board, platform_admin):
    result = whatif_demand.run_whatif(Scenario(days=7))
    assert result.pop("ahead") == [] and "demand" not in result
    assert result | {"elapsed_s": 0} == whatif.run_whatif(Scenario(days=7)) | {"elapsed_s": 0}
    client.force_login(platform_admin)
    assert 'id="whatif-ahead"' not in client.post("/capacity/what-if/", {"days": "7"}).content.decode()
