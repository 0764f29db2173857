"""What each role does in a real browser against the real server, real workers and the lab.

Live behaviour is asserted without reloading: the page sets a marker on ``window`` first, and the
marker must still be there when the badge changes."""

import json

import pytest

from allocations.models import Desktop, QuotaRequest
from allocations.services.request import request_desktop
from allocations.tests.factories import make_template
from audit import services as audit
from inventory import tasks as inventory_tasks
from inventory.models import VGPUProfile

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
PASSWORD = "pw-for-tests-1"
NO_RELOAD = "() => { window.__noReload = true; }"


@pytest.fixture
def lab_with_worker(lab, catalog, tenant, other_tenant, celery_worker_for):
    host = lab("lab-a40=A40x2")
    for t in (tenant, other_tenant):
        t.quota.max_desktops = 4
        t.quota.max_framebuffer_mib = 100000
        t.quota.save()
    template = make_template(
        "CAD workstation",
        profile=VGPUProfile.objects.get(name="A40-8Q"),
        tenants=[tenant, other_tenant],
        vcpus=4,
        memory_mib=8192,
        description="8 GiB vGPU for CAD and visualisation",
    )
    make_template("Whole L40S", tenants=[tenant], gpu_models=["L40S"], vcpus=16, memory_mib=65536)
    celery_worker_for(host)
    return host, template


def wait_for_status(page, label, timeout=30_000):
    page.wait_for_function(
        "(label) => document.querySelector('[data-field=status]')?.textContent.trim() === label",
        arg=label,
        timeout=timeout,
    )


def test_member_requests_a_desktop_and_sees_it_run_without_reloading(
    asgi_server, page, login, screenshot, tenant_member, lab_with_worker, in_thread
):
    host, template = lab_with_worker
    login(page, asgi_server, tenant_member.username, PASSWORD)
    page.goto(f"{asgi_server}/desktops/new/")
    assert page.locator(".tile", has_text="CAD workstation").locator(".ok").inner_text() == "Available now"
    assert "No capacity" in page.locator(".tile", has_text="Whole L40S").inner_text()
    screenshot(page, "desktop-new")
    page.select_option("#id_template", label="CAD workstation")
    page.fill("#id_name", "My CAD box")
    with page.expect_navigation():
        page.click("button:has-text('Request desktop')")
    page.wait_for_function("() => document.getElementById('live-indicator').textContent === 'live'")
    page.evaluate(NO_RELOAD)
    wait_for_status(page, "Running")
    assert page.evaluate("() => window.__noReload") is True, "the page was reloaded"
    desktop = Desktop.objects.get(name="My CAD box")
    for _ in range(3):  # the host's worker samples its (simulated) telemetry and pushes it
        inventory_tasks.sample_utilization.apply_async(args=[host.pk], queue=host.queue)
        page.wait_for_timeout(700)
    page.wait_for_function("() => !document.getElementById('chart-empty')", timeout=20_000)
    page.wait_for_selector("#desktop-summary button:has-text('Release')")  # actions follow the status
    assert "left" in page.locator("#desktop-summary").inner_text()
    assert page.evaluate("() => window.__noReload") is True
    timeline = page.locator("#timeline").inner_text()
    assert "desktop.requested" in timeline and "desktop.running" in timeline
    screenshot(page, "desktop-running")
    page.goto(f"{asgi_server}/")
    assert page.locator(f'[data-desktop-id="{desktop.pk}"] [data-field=status]').inner_text() == "Running"
    screenshot(page, "home-member-with-desktop")


def test_a_desktop_requested_elsewhere_appears_on_the_home_page_as_the_server_renders_its_row(
    asgi_server, page, login, screenshot, tenant_member, lab_with_worker, in_thread
):
    host, template = lab_with_worker
    login(page, asgi_server, tenant_member.username, PASSWORD)
    page.goto(f"{asgi_server}/")
    assert page.locator("#my-desktops .empty-row").count() == 1
    page.wait_for_function("() => document.getElementById('live-indicator').textContent === 'live'")
    page.evaluate(NO_RELOAD)
    desktop = in_thread(
        request_desktop, actor=tenant_member, template_id=template.pk, duration_hours=2, name="From the API"
    )
    row = page.locator(f'#my-desktops tr[data-desktop-id="{desktop.pk}"]')
    row.locator("[data-field=status]", has_text="Running").wait_for(timeout=30_000)
    cells = row.locator("td").all_inner_texts()
    assert cells[0] == "From the API" and cells[2] == "A40-8Q", cells  # the GPU column: the row came from the server
    assert cells[3].endswith("left")
    assert row.locator("td").first.locator("a").get_attribute("href") == f"/desktops/{desktop.pk}/"
    assert page.locator("#my-desktops tbody tr").count() == 1  # the empty row went, and the row came once
    assert page.evaluate("() => window.__noReload") is True, "the page was reloaded"
    screenshot(page, "home-desktop-inserted-live")


def test_over_quota_request_shows_the_reason(asgi_server, page, login, tenant, tenant_member, lab_with_worker):
    tenant.quota.max_desktops = 0
    tenant.quota.save()
    login(page, asgi_server, tenant_member.username, PASSWORD)
    page.goto(f"{asgi_server}/desktops/new/")
    reason = page.locator(".tile", has_text="CAD workstation").locator(".why").inner_text()
    assert (
        reason == "Over quota: Your tenant already has 0 of 0 desktops allowed at once (desktops being started "
        "count too)."
    )
    page.select_option("#id_template", label="CAD workstation")
    page.click("button:has-text('Request desktop')")
    page.wait_for_selector(".messages li.error")
    assert "0 of 0 desktops allowed" in page.locator(".messages").inner_text()
    assert not Desktop.objects.exists()


def test_admin_approves_a_quota_request_and_the_members_limit_changes(
    asgi_server, browser, page, login, screenshot, tenant, tenant_member, platform_admin
):
    login(page, asgi_server, tenant_member.username, PASSWORD)
    page.goto(f"{asgi_server}/quota-requests/new/")
    page.fill("#id_max_desktops", "7")
    page.fill("#id_reason", "A design sprint with seven people next week")
    with page.expect_navigation():
        page.click("button:has-text('Send request')")
    assert "sent to the platform admins" in page.locator(".messages").inner_text()

    admin_context = browser.new_context(viewport={"width": 1280, "height": 800})
    admin = admin_context.new_page()
    login(admin, asgi_server, platform_admin.username, PASSWORD)
    admin.goto(f"{asgi_server}/quota-requests/")
    row = admin.locator("#pending-requests tr", has_text="A design sprint")
    screenshot(admin, "admin-quota-queue")
    row.locator("input[name=reason]").first.fill("Enjoy the sprint")
    admin.on("dialog", lambda dialog: dialog.accept())
    with admin.expect_navigation():
        row.locator("button:has-text('Approve')").click()
    assert "quota was raised" in admin.locator(".messages").inner_text()
    admin_context.close()

    page.goto(f"{asgi_server}/")
    usage = page.locator(".usage li", has_text="Desktops").inner_text()
    assert "0 of 7" in usage
    assert QuotaRequest.objects.get().status == "approved"


def test_a_members_socket_never_receives_another_tenants_events(
    asgi_server, page, login, tenant_member, outsider, lab_with_worker, in_thread
):
    host, template = lab_with_worker
    frames = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(payload)))
    login(page, asgi_server, tenant_member.username, PASSWORD)
    page.wait_for_function("() => document.getElementById('live-indicator').textContent === 'live'")

    theirs = in_thread(request_desktop, actor=outsider, template_id=template.pk, duration_hours=1)
    mine = in_thread(request_desktop, actor=tenant_member, template_id=template.pk, duration_hours=1)
    for _ in range(60):
        if Desktop.objects.filter(pk__in=[theirs.pk, mine.pk], status="running").count() == 2:
            break
        page.wait_for_timeout(250)
    inventory_tasks.sample_utilization.apply_async(args=[host.pk], queue=host.queue)
    for _ in range(40):  # until my vGPU's sample arrived; the other tenant's would have come with it
        if any('"vgpu.utilization"' in f for f in frames if isinstance(f, str)):
            break
        page.wait_for_timeout(250)
    page.wait_for_timeout(1000)

    messages = [json.loads(f) for f in frames if isinstance(f, str)]
    desktop_ids = {m["data"]["id"] for m in messages if m["event"] == "desktop.status"}
    assert desktop_ids == {mine.pk}, messages
    assert {m["data"]["status"] for m in messages if m["event"] == "desktop.status"} >= {"requested", "running"}
    vgpus = {m["data"]["mdev_uuid"] for m in messages if m["event"] == "vgpu.utilization"}
    assert vgpus == {str(mine.mdev_uuid)}
    assert not [m for m in messages if m["event"] == "host.utilization"]
    assert str(theirs.mdev_uuid) not in "".join(f for f in frames if isinstance(f, str))


def test_auditor_filters_the_log_and_reads_reports(asgi_server, page, login, screenshot, auditor, tenant, in_thread):
    def events():
        from django.db import transaction

        with transaction.atomic():
            audit.record(
                "quota.updated",
                actor=None,
                object_type="allocations.quota",
                tenant_id=tenant.pk,
                tenant_name=tenant.name,
                after={"max_desktops": 5},
            )
            audit.record("host.maintenance", actor=None, object_type="inventory.host", object_repr="lab-a40")

    in_thread(events)
    login(page, asgi_server, auditor.username, PASSWORD)
    page.goto(f"{asgi_server}/audit/")
    page.click("summary:has-text('More filters')")  # the prefix filter sits with the rarer ones (issue 16)
    page.fill("#id_verb_prefix", "quota.")
    with page.expect_navigation():
        page.click("form.filters button[type=submit]")
    rows = page.locator("table tbody tr")
    assert rows.count() == 1 and "quota.updated" in rows.first.inner_text()
    assert page.locator("a", has_text="NDJSON").get_attribute("href").endswith("format=ndjson")
    screenshot(page, "auditor-audit-log")
    page.goto(f"{asgi_server}/reports/verify/")
    with page.expect_navigation():
        page.click("button:has-text('Verify now')")
    assert "The log verifies" in page.locator("#verification").inner_text()
    screenshot(page, "auditor-verify")
    page.goto(f"{asgi_server}/reports/usage/")
    screenshot(page, "auditor-usage")


def test_admin_inventory_shows_live_gpu_tiles(
    asgi_server, page, login, screenshot, platform_admin, tenant_member, lab_with_worker, in_thread
):
    host, template = lab_with_worker
    in_thread(request_desktop, actor=tenant_member, template_id=template.pk, duration_hours=2)
    login(page, asgi_server, platform_admin.username, PASSWORD)
    page.goto(f"{asgi_server}/inventory/")
    page.wait_for_function("() => document.getElementById('live-indicator').textContent === 'live'")
    page.evaluate(NO_RELOAD)
    for _ in range(40):
        if Desktop.objects.filter(status="running").exists():
            break
        page.wait_for_timeout(250)
    inventory_tasks.sample_utilization.apply_async(args=[host.pk], queue=host.queue)
    # beat's batched event for the operators' dashboards (sent here through the host's worker, in order)
    inventory_tasks.publish_fleet_utilization.apply_async(queue=host.queue)
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-field=util-text]')]"
        ".some(el => el.textContent.startsWith('SM ') && el.textContent !== 'SM —')"
    )
    assert page.evaluate("() => window.__noReload") is True
    screenshot(page, "admin-inventory")
    page.goto(f"{asgi_server}/inventory/hosts/{host.name}/")
    page.wait_for_selector("#host-desktops table")
    screenshot(page, "admin-host")
    page.goto(f"{asgi_server}/")
    screenshot(page, "admin-home")
