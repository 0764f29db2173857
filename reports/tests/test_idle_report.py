"""GPU-hours held vs used and idle capacity reclaimed (``reports.idle``), on hand-made minute samples:
the arithmetic at the period's edges, each minute counted once, and the admins' page and CSV."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from allocations.models import Desktop
from allocations.services import lifecycle
from allocations.tests.test_idle import T0, cad, minutes, running, vgpu_minute  # noqa: F401 - fixtures
from reports.idle import busy_seconds, held_vs_used, reclaimed_per_week, week_of

pytestmark = pytest.mark.django_db

SHARE = Decimal(8) / Decimal(48)  # an A40-8Q is 8/48 of an A40


@pytest.fixture
def two_hours(running):  # noqa: F811 - the fixture
    """The CAD desktop held from T0 to T0 + 2 h: busy (50 % SM) its first 30 minutes, idle (1 %) after."""
    Desktop.objects.filter(pk=running.pk).update(ended_at=T0 + timedelta(hours=2))
    vgpu_minute(running, minutes(-1), 90.0)  # before it started: the board's previous user, not this desktop
    for n in range(120):
        vgpu_minute(running, minutes(n), 50.0 if n < 30 else 1.0)
    vgpu_minute(running, minutes(10.5), 50.0)  # a second reading in a busy minute: still one minute
    vgpu_minute(running, minutes(120), 90.0)  # after it ended
    return running


def q(value) -> Decimal:
    return Decimal(value).quantize(Decimal("0.001"))


def test_held_and_used_gpu_hours_count_each_busy_minute_once_within_the_held_time(two_hours):
    (line,) = held_vs_used(T0 - timedelta(days=1), T0 + timedelta(days=1), now=T0 + timedelta(days=1))
    assert (line.tenant, line.template, line.desktops) == (two_hours.tenant.slug, "CAD", 1)
    assert line.held_gpu_hours == q(2 * SHARE)
    assert line.used_gpu_hours == q(Decimal("0.5") * SHARE)
    assert line.idle_gpu_hours == q(2 * SHARE) - q(Decimal("0.5") * SHARE) and line.used_percent == 25


def test_a_period_edge_inside_a_busy_minute_counts_only_its_part_inside(two_hours):
    start = T0 + timedelta(minutes=29, seconds=30)  # the last busy minute's second half
    (line,) = held_vs_used(start, T0 + timedelta(hours=3), now=T0 + timedelta(days=1))
    assert line.held_gpu_hours == q(Decimal(90 * 60 + 30) / 3600 * SHARE)
    assert line.used_gpu_hours == q(Decimal(30) / 3600 * SHARE)


def test_a_running_desktop_is_held_and_used_up_to_now(two_hours):
    Desktop.objects.filter(pk=two_hours.pk).update(ended_at=None)
    (line,) = held_vs_used(T0, T0 + timedelta(days=1), now=minutes(15))
    assert line.held_gpu_hours == q(Decimal("0.25") * SHARE)
    assert line.used_gpu_hours == q(Decimal("0.25") * SHARE)


def test_busy_seconds_never_exceed_the_stretch():
    from allocations.services.idle import Sample

    samples = [Sample("a", T0 + timedelta(minutes=n), 100.0) for n in range(-2, 5)]
    assert busy_seconds(samples, 5, T0, T0 + timedelta(minutes=3)) == {"a": 180}
    assert busy_seconds(samples, 101, T0, T0 + timedelta(minutes=3)) == {}


def test_reclaimed_per_week_counts_the_audited_steps_and_the_gpu_hours_given_back(running):  # noqa: F811 - the fixture
    with transaction.atomic():
        lifecycle.audit_desktop("desktop.idle_warned", running, actor=None, after={})
        lifecycle.audit_desktop("desktop.idle_warned", running, actor=None, after={})
        lifecycle.audit_desktop("desktop.reclaimed", running, actor=None, after={"remaining_s": 7200})
    now = timezone.now()
    (week,) = reclaimed_per_week(now - timedelta(days=1), now + timedelta(days=1))
    assert week.week == week_of(now) and week.week.weekday() == 0 and week.week.hour == 0
    assert week.counts == {
        "desktop.idle_warned": 2,
        "desktop.suspended": 0,
        "desktop.resumed": 0,
        "desktop.reclaimed": 1,
    }
    assert week.gpu_hours_returned == q(2 * SHARE)
    assert reclaimed_per_week(now + timedelta(days=1), now + timedelta(days=2)) == []


def test_the_page_and_its_csv_are_for_operators(client, two_hours, platform_admin, tenant_member):
    url = reverse("held-vs-used-page") + "?period=2026-11"
    client.force_login(tenant_member)
    assert client.get(url).status_code == 403
    client.force_login(platform_admin)
    page = client.get(url).content.decode()
    assert 'id="held-vs-used"' in page and "CAD" in page and "25 %" in page
    csv = client.get(url + "&format=csv")
    assert csv["Content-Type"].startswith("text/csv")
    header, row = csv.content.decode().splitlines()
    assert header == "tenant,template,desktops,held_gpu_hours,used_gpu_hours,idle_gpu_hours"
    assert row == f"{two_hours.tenant.slug},CAD,1,{q(2 * SHARE)},{q(SHARE / 2)},{q(2 * SHARE) - q(SHARE / 2)}"
