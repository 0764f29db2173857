"""Bookings' pages, API and iCalendar feed: what each persona sees, and the feed's structure."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from bookings.models import Booking, FeedToken
from bookings.services import book
from tenancy.models import Membership


@pytest.fixture
def booking(board, tenant_member):
    _, template = board
    start = (timezone.now() + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    return book(
        actor=tenant_member,
        template_id=template.pk,
        start=start,
        end=start + timedelta(hours=2),
        rrule="FREQ=WEEKLY;COUNT=3",
        title="Deep learning, lab session",
    )


def test_api_books_and_answers_409_in_words_when_it_does_not_fit(api, board, tenant_member):
    _, template = board
    start = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    body = {"template": template.pk, "start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()}
    first = api.as_user(tenant_member).post("/api/bookings/", body, format="json")
    assert first.status_code == 201, first.json()
    assert len(first.json()["occurrences"]) == 1
    second = api.as_user(tenant_member).post("/api/bookings/", body, format="json")
    assert second.status_code == 409
    error = second.json()["error"]
    assert (error["code"], error["details"]["resource"]) == ("no_capacity", "future_capacity")
    assert "1 of 1 window(s) do not fit" in error["message"] and "only 0 of 1 desktops fit" in error["message"]


def test_api_hides_other_tenants_bookings(api, booking, outsider, platform_admin):
    assert api.as_user(outsider).get(f"/api/bookings/{booking.pk}/").status_code == 404
    assert api.as_user(outsider).get("/api/bookings/").json()["count"] == 0
    assert api.as_user(outsider).post(f"/api/bookings/{booking.pk}/cancel/").status_code == 404
    assert api.as_user(platform_admin).get(f"/api/bookings/{booking.pk}/").status_code == 200


def test_api_cancel_of_a_non_numeric_id_is_404_not_500(api, tenant_member):
    """Found by portal/tests/test_fuzz.py: /api/bookings/<garbage>/cancel/ raised ValueError (500)."""
    assert api.as_user(tenant_member).post("/api/bookings/%C2%96m/cancel/").status_code == 404


def test_api_cancel_frees_the_windows(api, booking, tenant_member):
    response = api.as_user(tenant_member).post(f"/api/bookings/{booking.pk}/cancel/")
    assert response.status_code == 200
    assert {o["state"] for o in response.json()["occurrences"]} == {"cancelled"}


def test_calendar_pages_by_role(client, booking, tenant_member, outsider, platform_admin):
    client.force_login(tenant_member)
    week = booking.start.date().isoformat()
    page = client.get(f"/bookings/?week={week}")
    assert page.status_code == 200 and "Deep learning, lab session" in page.content.decode()
    assert client.get("/bookings/fleet/").status_code == 403
    assert client.get("/bookings/tenant/").status_code == 403  # a member without the manager permission
    assert client.get("/bookings/capacity/").status_code == 403
    client.force_login(outsider)
    assert "Deep learning" not in client.get(f"/bookings/?week={week}").content.decode()
    assert client.get(f"/bookings/{booking.pk}/").status_code == 404
    client.force_login(platform_admin)
    assert "Deep learning" in client.get(f"/bookings/fleet/?week={week}").content.decode()
    held = client.get("/bookings/capacity/").content.decode()
    assert "Deep learning, lab session" in held and "<td>1.0</td>" in held


def test_the_booking_form_builds_a_weekly_rule(client, board, tenant_member):
    _, template = board
    client.force_login(tenant_member)
    start = (timezone.localtime() + timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    response = client.post(
        "/bookings/new/",
        {
            "template": template.pk,
            "start": start.strftime("%Y-%m-%dT%H:%M"),
            "end": (start + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"),
            "repeat_until": (start + timedelta(days=21)).strftime("%Y-%m-%dT%H:%M"),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    booking = Booking.objects.get()
    assert booking.rrule.startswith("FREQ=WEEKLY;UNTIL=")
    assert booking.occurrences.count() == 4


def _parse_ics(text: str) -> list[dict]:
    """A small RFC 5545 reader: unfold lines, then collect each VEVENT's properties."""
    assert text.endswith("\r\n")
    lines = []
    for raw in text.split("\r\n")[:-1]:
        assert len(raw.encode()) <= 75
        if raw.startswith(" "):
            lines[-1] += raw[1:]
        else:
            lines.append(raw)
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-1] == "END:VCALENDAR"
    assert "VERSION:2.0" in lines and any(line.startswith("PRODID:") for line in lines)
    events, current = [], None
    for line in lines[1:-1]:
        if line == "BEGIN:VEVENT":
            current = {}
        elif line == "END:VEVENT":
            events.append(current)
            current = None
        elif current is not None:
            key, _, value = line.partition(":")
            current[key] = value
    assert current is None
    return events


def test_the_ical_feed_lists_each_window_for_its_person_only(client, booking, tenant_member, outsider):
    token = FeedToken.objects.create(user=tenant_member).token
    response = client.get(f"/bookings/feed/{token}.ics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/calendar")
    events = _parse_ics(response.content.decode())
    assert len(events) == 3
    for event in events:
        assert {"UID", "DTSTAMP", "DTSTART", "DTEND", "SUMMARY", "STATUS"} <= set(event)
        assert event["DTSTART"].endswith("Z") and event["DTEND"] > event["DTSTART"]
    assert events[0]["SUMMARY"] == "Deep learning\\, lab session"
    assert events[0]["DTSTART"] == f"{booking.start.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    other = FeedToken.objects.create(user=outsider).token
    assert _parse_ics(client.get(f"/bookings/feed/{other}.ics").content.decode()) == []
    assert client.get("/bookings/feed/not-a-token.ics").status_code == 404


@pytest.mark.parametrize("week", ["0001-01-01", "9999-12-31", "1999-12-31", "2101-01-04"])
def test_a_calendar_week_far_out_of_range_shows_this_week_not_an_overflow_500(client, tenant_member, week):
    """Reproduction: /bookings/?week=0001-01-01 (or 9999-12-31) raised OverflowError (a 500)."""
    client.force_login(tenant_member)
    page = client.get(f"/bookings/?week={week}")
    assert page.status_code == 200
    monday = timezone.localdate() - timedelta(days=timezone.localdate().weekday())
    assert f"week={monday + timedelta(days=7):%Y-%m-%d}" in page.content.decode()


def test_the_ical_feed_drops_a_tenants_bookings_once_the_person_left_it(client, booking, tenant_member):
    """Reproduction: after the person's membership of the tenant was removed, their feed URL still listed
    that tenant's booked windows."""
    token = FeedToken.objects.create(user=tenant_member).token
    assert len(_parse_ics(client.get(f"/bookings/feed/{token}.ics").content.decode())) == 3
    Membership.objects.filter(user=tenant_member, tenant=booking.tenant).delete()
    assert _parse_ics(client.get(f"/bookings/feed/{token}.ics").content.decode()) == []
