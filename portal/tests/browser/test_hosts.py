"""The platform admin's host pages in a real browser (issue 16): register a host after testing its
connection, and force-drain a host while its desktop's owner watches their desktop page, which says
so without reloading."""

import pytest

from allocations.models import Desktop
from allocations.services.request import request_desktop
from allocations.tests.factories import make_template
from inventory.models import Host, VGPUProfile
from inventory.services.lab import LabHostSpec, write_lab_xml

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
PASSWORD = "pw-for-tests-1"
NO_RELOAD = "() => { window.__noReload = true; }"


def test_admin_tests_a_connection_then_registers_the_host(
    asgi_server, page, login, screenshot, platform_admin, catalog, tmp_path
):
    path = write_lab_xml(LabHostSpec.parse("gpu-new=A40x2"), tmp_path / "new")
    login(page, asgi_server, platform_admin.username, PASSWORD)
    page.goto(f"{asgi_server}/inventory/hosts/")
    with page.expect_navigation():
        page.click("a:has-text('Register a host')")
    page.fill("#id_name", "gpu-new")
    page.fill("#id_libvirt_uri", f"test://{path}")
    page.select_option("#id_telemetry_source", "simulated")
    with page.expect_navigation():
        page.click("button:has-text('Test connection')")
    rows = page.locator("#probed-gpus tbody tr")
    assert rows.count() == 2
    assert "0000:41:00.0" in rows.nth(0).inner_text() and "48.0 GiB" in rows.nth(0).inner_text()
    assert "A40-8Q" in rows.nth(0).inner_text()
    assert "256.0 GiB" in page.locator("[data-field=ram]").inner_text()
    assert not Host.objects.filter(name="gpu-new").exists()  # tested, not saved
    screenshot(page, "admin-host-test-connection")
    with page.expect_navigation():
        page.click("button:has-text('Register')")
    assert page.url.endswith("/inventory/hosts/gpu-new/")
    assert "gpu-new is registered" in page.locator(".messages").inner_text()
    assert Host.objects.get(name="gpu-new").gpus.count() == 2
    screenshot(page, "admin-host-registered")

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto(f"{asgi_server}/inventory/hosts/")
    assert page.locator('[data-host="gpu-new"]').is_visible()
    screenshot(page, "admin-host-list-phone")


@pytest.fixture
def running_on_lab(lab, catalog, tenant, tenant_member, celery_worker_for, in_thread):
    host = lab("lab-a40=A40x1")
    tenant.quota.max_framebuffer_mib = 100000
    tenant.quota.save()
    template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant])
    celery_worker_for(host)
    desktop = in_thread(request_desktop, actor=tenant_member, template_id=template.pk, duration_hours=2)
    return host, desktop


def test_force_drain_tells_the_owner_on_their_page_live_then_ends_their_desktop(
    asgi_server, browser, page, login, screenshot, platform_admin, tenant_member, running_on_lab
):
    host, desktop = running_on_lab
    login(page, asgi_server, tenant_member.username, PASSWORD)
    page.goto(f"{asgi_server}/desktops/{desktop.pk}/")
    page.wait_for_function(
        "() => document.querySelector('[data-field=status]')?.textContent.trim() === 'Running'", timeout=30_000
    )
    page.wait_for_function("() => document.getElementById('live-indicator').textContent === 'live'")
    page.evaluate(NO_RELOAD)

    admin_context = browser.new_context(viewport={"width": 1280, "height": 800})
    admin = admin_context.new_page()
    admin.on("dialog", lambda dialog: dialog.accept())
    login(admin, asgi_server, platform_admin.username, PASSWORD)
    admin.goto(f"{asgi_server}/inventory/hosts/{host.name}/")
    with admin.expect_navigation():
        admin.click("a:has-text('Force-drain')")
    assert desktop.name in admin.locator("table").inner_text()
    admin.fill("#id_reason", "BIOS update")
    admin.fill("#id_minutes", "30")
    screenshot(admin, "admin-host-drain")
    with admin.expect_navigation():
        admin.click("button:has-text('Drain')")
    assert "1 desktop owner told" in admin.locator(".messages").inner_text()
    screenshot(admin, "admin-host-draining")

    page.wait_for_selector("[data-field=drain]", timeout=10_000)  # told live, without a reload
    assert "BIOS update" in page.locator("[data-field=drain]").inner_text()
    assert page.evaluate("() => window.__noReload") is True, "the page was reloaded"
    screenshot(page, "desktop-host-draining")

    admin.goto(f"{asgi_server}/inventory/hosts/{host.name}/drain/")
    admin.fill("#id_reason", "BIOS update")
    with admin.expect_navigation():
        admin.click("button:has-text('End now')")
    page.wait_for_function(
        "() => document.querySelector('[data-field=status]')?.textContent.trim() === 'Released'", timeout=30_000
    )
    assert "its host was drained: BIOS update" in page.locator("#timeline").inner_text()
    screenshot(page, "desktop-drained")
    admin_context.close()
    assert Desktop.objects.get(pk=desktop.pk).end_reason == "drained"
