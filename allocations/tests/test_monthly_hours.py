"""The tenant's monthly desktop-hours cap (issue 16, ``Quota.max_desktop_hours_per_month``): hours used or
booked this calendar month (UTC) plus those asked for may not pass it, when requesting or extending a
desktop; shown beside its limit on the quota page; no cap means no limit. The clock is fixed mid-month
so the month's end never clips what a test asks for."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from allocations.choices import DesktopStatus
from allocations.exceptions import QuotaExceeded
from allocations.models import Desktop, Quota
from allocations.services.lifecycle import extend_desktop
from allocations.services.quotas import desktop_hours_booked_this_month, quota_lines
from allocations.services.request import request_desktop
from allocations.tests.factories import make_template
from core.limits import MAX_DESKTOP_HOURS_PER_MONTH
from inventory.models import VGPUProfile

pytestmark = pytest.mark.django_db
NOW = datetime(2031, 5, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    return NOW


@pytest.fixture
def capped(tenant, tenant_member, clock):
    """Acme Research with a 40 desktop-hour monthly cap and 37 of them already used or booked."""
    Quota.objects.filter(tenant=tenant).update(
        max_desktops=10, max_framebuffer_mib=10**6, max_desktop_hours=24, max_desktop_hours_per_month=40
    )
    template = make_template("Old", tenants=[tenant])
    common = {
        "tenant": tenant,
        "owner": tenant_member,
        "template": template,
        "vcpus": 1,
        "memory_mib": 1024,
        "framebuffer_mib": 0,
    }
    # ended: 30 h in May, 10 more in April (not counted)
    Desktop.objects.create(
        name="ended",
        status=DesktopStatus.RELEASED,
        holds_capacity=False,
        duration_hours=40,
        started_at=datetime(2031, 4, 30, 14, 0, tzinfo=UTC),
        ended_at=datetime(2031, 5, 2, 6, 0, tzinfo=UTC),
        **common,
    )
    # running: started 3 h ago, booked until 4 h from now → 7 h
    Desktop.objects.create(
        name="running",
        status=DesktopStatus.RUNNING,
        duration_hours=7,
        started_at=NOW - timedelta(hours=3),
        expires_at=NOW + timedelta(hours=4),
        **common,
    )
    return tenant


def test_used_and_booked_hours_count_this_month_only(capped):
    assert desktop_hours_booked_this_month(capped.pk) == 37


def test_request_over_the_monthly_cap_is_refused_in_words(capped, tenant_member, lab, catalog):
    """Reproduction: 37 of 40 desktop-hours used, an 8-hour desktop was granted (only the longest desktop was
    limited)."""
    lab("lab-a40=A40x1")
    template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[capped])
    with pytest.raises(QuotaExceeded) as refused:
        request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=8)
    assert refused.value.message == (
        "Acme Research has used 37 of its 40 desktop-hours this month; this desktop would need 8 more. "
        "Ask for a higher quota or a shorter desktop."
    )
    assert refused.value.status_code == 409
    assert refused.value.details == {"resource": "desktop_hours_per_month", "used": 37, "allowed": 40, "requested": 8}
    assert not Desktop.objects.filter(template=template).exists()


def test_request_within_the_monthly_cap_is_granted_and_then_counts(capped, tenant_member, lab, catalog):
    lab("lab-a40=A40x1")
    template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[capped])
    request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=3)
    assert desktop_hours_booked_this_month(capped.pk) == 40
    with pytest.raises(QuotaExceeded, match="used 40 of its 40"):
        request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=1)


def test_no_monthly_cap_means_unlimited(capped, tenant_member, lab, catalog):
    Quota.objects.filter(tenant=capped).update(max_desktop_hours_per_month=None)
    lab("lab-a40=A40x1")
    template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[capped])
    for _ in range(3):
        request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=24)
    assert desktop_hours_booked_this_month(capped.pk) == 37 + 72
    assert "max_desktop_hours_per_month" not in {line.key for line in quota_lines(capped)}


def test_extending_past_the_monthly_cap_is_refused(capped, tenant_member):
    running = Desktop.objects.get(name="running")
    with pytest.raises(QuotaExceeded) as refused:
        extend_desktop(running, 4, actor=tenant_member)
    assert refused.value.message == (
        "Acme Research has used 37 of its 40 desktop-hours this month; extending it by 4 h would need 4 more. "
        "Ask for a higher quota or a shorter extension."
    )
    running.refresh_from_db()
    assert running.expires_at == NOW + timedelta(hours=4)
    extend_desktop(running, 3, actor=tenant_member)  # exactly to the cap
    assert desktop_hours_booked_this_month(capped.pk) == 40


def test_quota_page_shows_monthly_usage_beside_the_limit(capped, platform_admin, client):
    client.force_login(platform_admin)
    page = client.get(f"/tenants/{capped.pk}/quota/").content.decode()
    assert 'data-usage="max_desktop_hours_per_month">37 h of 40 h used or booked' in page
    assert 'name="max_desktop_hours_per_month"' in page and 'value="40"' in page
    tenant_page = client.get(f"/tenants/{capped.pk}/").content.decode()
    assert 'data-limit="max_desktop_hours_per_month"' in tenant_page


@pytest.mark.parametrize("value", [0, MAX_DESKTOP_HOURS_PER_MONTH + 1])
def test_quota_page_refuses_out_of_bounds_monthly_caps(capped, platform_admin, client, value):
    client.force_login(platform_admin)
    form = {
        "max_desktops": 10,
        "max_framebuffer_gib": 16,
        "max_desktop_hours": 24,
        "max_desktop_hours_per_month": value,
    }
    response = client.post(f"/tenants/{capped.pk}/quota/", form)
    assert response.status_code == 200
    assert 'class="error"' in response.content.decode()
    assert Quota.objects.get(tenant=capped).max_desktop_hours_per_month == 40


def test_quota_page_sets_and_clears_the_monthly_cap(capped, platform_admin, client):
    client.force_login(platform_admin)
    form = {"max_desktops": 10, "max_framebuffer_gib": 16, "max_desktop_hours": 24, "max_desktop_hours_per_month": 100}
    assert client.post(f"/tenants/{capped.pk}/quota/", form).status_code == 302
    assert Quota.objects.get(tenant=capped).max_desktop_hours_per_month == 100
    form["max_desktop_hours_per_month"] = ""
    assert client.post(f"/tenants/{capped.pk}/quota/", form).status_code == 302
    assert Quota.objects.get(tenant=capped).max_desktop_hours_per_month is None


def test_quota_api_shows_and_bounds_the_monthly_cap(capped, platform_admin, api):
    client = api.as_user(platform_admin)
    quota = Quota.objects.get(tenant=capped)
    assert client.get(f"/api/quotas/{quota.pk}/").json()["max_desktop_hours_per_month"] == 40
    response = client.patch(
        f"/api/quotas/{quota.pk}/", {"max_desktop_hours_per_month": MAX_DESKTOP_HOURS_PER_MONTH + 1}, format="json"
    )
    assert response.status_code == 400
    usage = client.get(f"/api/quotas/{quota.pk}/usage/").json()["limits"]
    assert {"key": "max_desktop_hours_per_month", "used": 37.0, "allowed": 40}.items() <= usage[-1].items()


def test_a_member_can_ask_for_a_higher_monthly_cap(capped, tenant_member, platform_admin):
    from allocations.services.quotas import approve_quota_request, request_quota_increase

    asked = request_quota_increase(
        actor=tenant_member, tenant=capped, changes={"max_desktop_hours_per_month": 200}, reason="month-end render"
    )
    approve_quota_request(asked.pk, actor=platform_admin)
    assert Quota.objects.get(tenant=capped).max_desktop_hours_per_month == 200


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL's row locks")
def test_two_requests_for_the_last_hours_only_one_wins(capped, lab, catalog):
    """Two members ask for the last 3 desktop-hours at once: the quota row's lock lets exactly one in."""
    from allocations.tests.test_races import members, race

    lab("lab-a40=A40x1")
    template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[capped])
    users = members(2, [capped])
    outcome = race([lambda u=u: request_desktop(actor=u, template_id=template.pk, duration_hours=3) for u in users])
    assert outcome == Counter({"ok": 1, "QuotaExceeded": 1})
    assert desktop_hours_booked_this_month(capped.pk) == 40
