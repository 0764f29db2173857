"""Issue 16, templates and the fleet overview in a browser: a platform admin creates a template from the
form, reads where it could run now and why not, retires it; the inventory page shows the fleet's
totals, the capacity no offered template can use, and its problems with links; on a phone too."""

import pytest

from allocations.models import DesktopTemplate
from inventory.choices import HostState
from inventory.models import VGPUProfile
from inventory.tests.factories import make_gpu, make_host, make_profile

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
PASSWORD = "pw-for-tests-1"


@pytest.fixture
def fleet(db):
    make_profile("A40-8Q")
    make_profile("A40-24Q")
    free = make_host("gpu-free")
    make_gpu(free, "0000:41:00.0")
    busy = make_host("gpu-busy")
    make_gpu(busy, "0000:41:00.0", current_profile=VGPUProfile.objects.get(name="A40-24Q"), instances_used=1)
    make_host("gpu-down", state=HostState.OFFLINE)


def test_admin_creates_checks_and_retires_a_template(
    asgi_server, page, login, screenshot, platform_admin, tenant, fleet
):
    login(page, asgi_server, platform_admin.username, PASSWORD)
    page.goto(f"{asgi_server}/templates/")
    page.click("text=New template")
    page.fill("#id_name", "CAD")
    page.check("input[name=kind][value=vgpu]")
    page.select_option("#id_profile", "A40-8Q")
    page.fill("#id_vcpus", "4")
    page.fill("#id_memory_gib", "8")
    page.fill("#id_disk_image", "debian-12.qcow2")
    page.fill("#id_max_duration_hours", "12")
    page.check(f"input[name=allowed_tenants][value='{tenant.pk}']")
    screenshot(page, "template-new")
    with page.expect_navigation():
        page.click("text=Save template")
    assert page.locator("h1").inner_text() == "CAD"
    rows = page.locator("#placement tr[data-host]")
    assert rows.count() == 3
    assert "engine's choice" in page.locator("tr[data-host=gpu-free]").inner_text()
    assert "runs A40-24Q (another profile)" in page.locator("tr[data-host=gpu-busy]").inner_text()
    assert "offline" in page.locator("tr[data-host=gpu-down]").inner_text()
    screenshot(page, "template-detail")
    with page.expect_navigation():
        page.click("button:has-text('Retire')")
    assert "is retired" in page.locator(".messages").inner_text()
    assert DesktopTemplate.objects.get(name="CAD").retired_at is not None
    screenshot(page, "template-retired")


def test_inventory_shows_totals_stranded_capacity_and_problems(
    asgi_server, page, login, screenshot, auditor, tenant, fleet, browser
):
    from allocations.tests.factories import make_template

    make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant])
    login(page, asgi_server, auditor.username, PASSWORD)
    page.goto(f"{asgi_server}/inventory/")
    assert page.locator("#stranded .num").inner_text() == "0.5"  # gpu-busy's free 24Q instance: nobody asks for 24Q
    assert "It runs A40-24Q, which no offered template takes." in page.locator("#fleet-totals").inner_text()
    with page.expect_navigation():
        page.click("#fleet-problems a:has-text('gpu-down')")
    assert page.url.endswith("/inventory/hosts/gpu-down/")
    page.goto(f"{asgi_server}/inventory/")
    screenshot(page, "fleet-overview")
    phone = browser.new_context(viewport={"width": 390, "height": 844}, storage_state=page.context.storage_state())
    small = phone.new_page()
    small.goto(f"{asgi_server}/inventory/")
    assert small.locator("#stranded").is_visible()
    screenshot(small, "fleet-overview-phone")
    phone.close()
