"""An auditor's day in a real browser (issue 16): the audit log with its widgets, keyset pages and
readable changes, an event's page with its chain state, a CSV for spreadsheets, and the usage charts."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from allocations.choices import DesktopStatus
from allocations.models import Desktop
from allocations.tests.factories import make_template
from audit import services as audit
from audit.models import AuditEvent
from inventory.tests.factories import make_gpu, make_host, make_profile

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
PASSWORD = "pw-for-tests-1"


def watch_errors(page) -> list[str]:
    """Console errors (a script refused by the Content-Security-Policy shows here) and page errors."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def test_auditor_filters_the_log_pages_back_in_time_and_opens_an_event(asgi_server, page, login, screenshot, auditor):
    for i in range(60):
        with transaction.atomic():
            audit.record("thing.changed", actor=None, object_type="test.thing", object_id=i, after={"i": i})
    with transaction.atomic():
        audit.record(
            "quota.updated",
            actor=auditor,
            object_type="allocations.quota",
            object_id="1",
            before={"max_desktops": 2, "limits": {"A40-8Q": 1}},
            after={"max_desktops": 4, "limits": {"A40-8Q": 3}, "note": "x" * 300},
        )
    errors = watch_errors(page)
    login(page, asgi_server, auditor.username, PASSWORD)
    page.goto(f"{asgi_server}/audit/")
    change = page.locator("tr[data-seq]", has_text="quota.updated").locator("td.change")
    assert "max_desktops: 2 → 4" in " ".join(change.inner_text().split())
    assert "limits.A40-8Q: 1 → 3" in " ".join(change.inner_text().split())
    screenshot(page, "auditor-audit-log")

    page.select_option("select[name=verb]", "thing.changed")
    with page.expect_navigation():
        page.click("#audit-filters button[type=submit]")
    assert "verb=thing.changed" in page.url  # a shareable address
    newest = [int(s) for s in page.locator("tr[data-seq]").evaluate_all("rows => rows.map(r => r.dataset.seq)")]
    assert len(newest) == 50
    with page.expect_navigation():
        page.click("a[rel=next]")
    assert "before=" in page.url and "verb=thing.changed" in page.url
    older = [int(s) for s in page.locator("tr[data-seq]").evaluate_all("rows => rows.map(r => r.dataset.seq)")]
    assert len(older) == 10 and max(older) < min(newest)
    screenshot(page, "auditor-audit-log-older")

    seq = older[0]
    with page.expect_navigation():
        page.click(f"tr[data-seq='{seq}'] a[href='/audit/events/{seq}/']")
    assert "This event verifies" in page.locator("#event-verification h2").inner_text()
    assert AuditEvent.objects.get(seq=seq).hash in page.content()
    screenshot(page, "auditor-audit-event")

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the nav collapses
    page.goto(f"{asgi_server}/audit/")
    assert page.locator("#nav-toggle").is_visible()
    screenshot(page, "auditor-audit-log-phone")
    assert errors == [], errors


def test_usage_report_draws_charts_per_tenant_and_profile_beside_the_table(
    asgi_server, page, login, screenshot, auditor, tenant, other_tenant, tenant_member, outsider
):
    profiles = [make_profile("A40-8Q"), make_profile("A40-24Q")]
    host = make_host("gpu-1")
    make_gpu(host, current_profile=profiles[0])
    now = timezone.now()
    start = timezone.localtime(now).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    runs = [
        (tenant_member, tenant, profiles[0]),
        (tenant_member, tenant, profiles[1]),
        (outsider, other_tenant, profiles[0]),
    ]
    for i, (owner, t, profile) in enumerate(runs):
        template = make_template(f"T{i}", profile=profile, tenants=[t])
        Desktop.objects.create(
            name=f"d{i}", tenant=t, owner=owner, template=template, profile=profile, vcpus=4, memory_mib=8192,
            framebuffer_mib=profile.framebuffer_mib, duration_hours=2, status=DesktopStatus.RELEASED,
            holds_capacity=False, started_at=start + timedelta(hours=1 + i), ended_at=start + timedelta(hours=3 + i),
        )  # fmt: skip
    errors = watch_errors(page)
    login(page, asgi_server, auditor.username, PASSWORD)
    page.goto(f"{asgi_server}/reports/usage/")
    for name in ("tenant", "profile"):
        chart = page.locator(f"#usage-chart-{name}")
        chart.locator("canvas").wait_for()
        assert chart.get_attribute("data-ready") == "1"
        assert chart.locator(".u-legend").count() == 1
    assert "acme" in page.locator("#usage-chart-tenant .u-legend").inner_text()
    assert "A40-24Q" in page.locator("#usage-chart-profile .u-legend").inner_text()
    assert page.locator(".usage-table tbody tr").count() == 2  # the table beside: per tenant
    screenshot(page, "auditor-usage-charts")
    assert errors == [], errors
