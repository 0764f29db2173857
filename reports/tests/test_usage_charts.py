"""The usage report's charts (issue 16): GPU-hours per tenant and per profile in each day of the period,
charged as the table charges them, handed to the page as JSON (no inline script)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from allocations.models import Desktop
from allocations.tests.factories import make_template
from inventory.models import VGPUProfile
from reports.usage import buckets, usage_report, usage_series

pytestmark = pytest.mark.django_db


@pytest.fixture
def desktops(lab, catalog, tenant, other_tenant, tenant_member, outsider, run_tasks):
    from allocations.services.request import request_desktop

    lab("lab-a40=A40x2")
    for t in (tenant, other_tenant):
        t.quota.max_desktops = 10
        t.quota.max_framebuffer_mib = 10**6
        t.quota.save()
    small = make_template("Small", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant, other_tenant])
    big = make_template("Big", profile=VGPUProfile.objects.get(name="A40-24Q"), tenants=[tenant])
    with run_tasks():
        ids = [
            request_desktop(actor=tenant_member, template_id=small.pk, duration_hours=2).pk,
            request_desktop(actor=tenant_member, template_id=big.pk, duration_hours=2).pk,
            request_desktop(actor=outsider, template_id=small.pk, duration_hours=2).pk,
        ]
    month = datetime(2026, 3, 1, tzinfo=timezone.get_current_timezone())
    spans = [
        (month - timedelta(hours=5), month + timedelta(days=1, hours=6)),  # straddles the start and a midnight
        (month + timedelta(days=3, hours=22), month + timedelta(days=4, hours=2)),
        (month + timedelta(days=30, hours=20), None),  # still running past the end
    ]
    for pk, (started, ended) in zip(ids, spans, strict=True):
        Desktop.objects.filter(pk=pk).update(started_at=started, ended_at=ended)
    return month


def test_the_series_per_day_add_up_to_the_tables_gpu_hours(desktops):
    start, end = desktops, datetime(2026, 4, 1, tzinfo=desktops.tzinfo)
    series = usage_series(start, end)
    assert series["step"] == "day" and len(series["t"]) == 31
    assert series["t"][0] == int(start.timestamp()) and series["t"][1] == int((start + timedelta(days=1)).timestamp())
    for group in ("tenant", "profile"):
        table = {line.key: line.gpu_hours for line in usage_report(start, end, group)}
        charted = {s["key"]: Decimal(str(round(sum(s["gpu_hours"]), 3))) for s in series[group]}
        assert charted == {k: v.quantize(Decimal("0.001")) for k, v in table.items()}, group
    acme = next(s for s in series["tenant"] if s["key"] == "acme")["gpu_hours"]
    # 8Q is 1/6 of an A40: 24 h on day 1, 6 h on day 2; the 24Q (1/2) 2 h on day 4 and 2 h on day 5
    assert acme[0] == pytest.approx(4.0) and acme[1] == pytest.approx(1.0 + 0)
    assert acme[3] == pytest.approx(1.0) and acme[4] == pytest.approx(1.0)


def test_a_long_period_is_charted_per_week():
    tz = timezone.get_current_timezone()
    edges = buckets(datetime(2026, 1, 1, tzinfo=tz), datetime(2026, 7, 1, tzinfo=tz))
    assert all((b - a).days == 7 for a, b in zip(edges[:-2], edges[1:-1], strict=True)) and len(edges) == 27


def test_the_usage_page_draws_its_charts_from_json_on_the_page(client, auditor, desktops, api):
    client.force_login(auditor)
    page = client.get("/reports/usage/", {"period": "2026-03"}).content.decode()
    assert 'id="usage-chart-tenant"' in page and 'id="usage-chart-profile"' in page
    assert '<script id="usage-series" type="application/json">' in page
    assert "/static/js/usage-charts.js" in page and "uPlot.iife.min.js" in page
    data = json.loads(page.split('<script id="usage-series" type="application/json">')[1].split("</script>")[0])
    assert {s["key"] for s in data["tenant"]} == {"acme", "globex"}
    assert {s["key"] for s in data["profile"]} == {"A40-8Q", "A40-24Q"}
    assert "<script>" not in page  # the Content-Security-Policy allows no inline script
    assert api.as_user(auditor).get("/api/usage/", {"period": "2026-03"}).json()["series"] == data
