"""A person's time zone (issue 16): "all times shown in one time zone and labelled: the user's,
chosen in their profile, default the browser's". Before, every page was rendered in the browser's
zone (the ``tz`` cookie) and a person could not choose one."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from allocations.choices import DesktopStatus
from allocations.models import Desktop
from allocations.tests.factories import make_template
from audit.models import AuditEvent
from tenancy import preferences
from tenancy.models import Preferences

pytestmark = pytest.mark.django_db

TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.fixture
def desktop(tenant, tenant_member):
    return Desktop.objects.create(
        name="CAD box",
        tenant=tenant,
        owner=tenant_member,
        template=make_template("Office", tenants=[tenant]),
        vcpus=2,
        memory_mib=4096,
        framebuffer_mib=0,
        duration_hours=4,
        status=DesktopStatus.RUNNING,
        started_at=timezone.now() - timedelta(hours=1),
        expires_at=timezone.now() + timedelta(hours=3),
    )


def _expires(desktop, zone) -> str:
    local = desktop.expires_at.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ("


@pytest.mark.parametrize("cookie", ["Europe/Paris", "America/New_York", "", "../../etc/passwd"])
def test_a_person_who_chose_tokyo_sees_their_desktop_in_jst_whatever_the_browser_sends(
    client, tenant_member, desktop, cookie
):
    """Reproduction: choose Asia/Tokyo, open /desktops/<pk>/ from a browser in Paris: the expiry was
    shown in CET (the cookie's zone); it is shown in JST, and live updates (body data-tz) agree."""
    preferences.set_time_zone(tenant_member, "Asia/Tokyo", actor=tenant_member)
    client.force_login(tenant_member)
    if cookie:
        client.cookies["tz"] = cookie
    page = client.get(f"/desktops/{desktop.pk}/").content.decode()
    assert _expires(desktop, TOKYO) in page and " JST (" in page
    assert 'data-tz="Asia/Tokyo"' in page and 'data-tz-label="JST"' in page and 'data-tz-offset="540"' in page


def test_without_a_choice_the_browsers_zone_is_used(client, tenant_member, desktop):
    client.force_login(tenant_member)
    client.cookies["tz"] = "America/New_York"
    page = client.get(f"/desktops/{desktop.pk}/").content.decode()
    assert _expires(desktop, ZoneInfo("America/New_York")) in page
    assert 'data-tz="America/New_York"' in page
    preferences.set_time_zone(tenant_member, "Asia/Tokyo", actor=tenant_member)
    preferences.set_time_zone(tenant_member, "", actor=tenant_member)  # back to the browser's
    page = client.get(f"/desktops/{desktop.pk}/").content.decode()
    assert 'data-tz="America/New_York"' in page and _expires(desktop, ZoneInfo("America/New_York")) in page


def test_the_account_page_offers_every_zone_with_the_browsers_first(client, tenant_member):
    client.force_login(tenant_member)
    client.cookies["tz"] = "Europe/Paris"
    response = client.get("/account/")
    assert response.status_code == 200
    page = response.content.decode()
    first = page.index("<option")
    assert page.index("The browser's (currently Europe/Paris)", first) < page.index('value="Africa/Abidjan"')
    assert '<option value="Asia/Tokyo">' in page and 'href="/account/"' in page and 'href="/account/tokens/"' in page


def test_choosing_a_zone_on_the_account_page_is_saved_and_audited(client, tenant_member):
    client.force_login(tenant_member)
    client.cookies["tz"] = "Europe/Paris"
    response = client.post("/account/", {"time_zone": "Asia/Tokyo"})
    assert response.status_code == 302 and response["Location"] == "/account/"
    assert Preferences.objects.get(user=tenant_member).time_zone == "Asia/Tokyo"
    created = AuditEvent.objects.get(verb="preferences.created")
    assert created.actor_id == tenant_member.pk and created.after["time_zone"] == "Asia/Tokyo"
    page = client.get("/account/").content.decode()
    assert '<option value="Asia/Tokyo" selected>' in page and "Saved: times are shown in Asia/Tokyo" in page
    assert 'data-tz="Asia/Tokyo"' in page

    assert client.post("/account/", {"time_zone": ""}).status_code == 302
    updated = AuditEvent.objects.get(verb="preferences.updated")
    assert updated.before == {"time_zone": "Asia/Tokyo"} and updated.after == {"time_zone": ""}
    assert 'data-tz="Europe/Paris"' in client.get("/account/").content.decode()


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", "x" * 500, "utc "])
def test_an_unknown_zone_is_refused_400_in_words_and_nothing_is_saved(client, tenant_member, zone):
    client.force_login(tenant_member)
    response = client.post("/account/", {"time_zone": zone})
    assert response.status_code == 400
    assert "is not a time zone the portal knows" in response.content.decode()
    assert not Preferences.objects.exists()
    assert not AuditEvent.objects.filter(verb__startswith="preferences.").exists()


def test_an_unknown_zone_is_refused_after_a_choice_and_the_choice_stays(client, tenant_member):
    preferences.set_time_zone(tenant_member, "Asia/Tokyo", actor=tenant_member)
    client.force_login(tenant_member)
    assert client.post("/account/", {"time_zone": "Nowhere/Special"}).status_code == 400
    assert Preferences.objects.get(user=tenant_member).time_zone == "Asia/Tokyo"
    assert not AuditEvent.objects.filter(verb="preferences.updated").exists()


def test_the_account_page_needs_a_signed_in_person(client):
    for response in (client.get("/account/"), client.post("/account/", {"time_zone": "Asia/Tokyo"})):
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not Preferences.objects.exists()
