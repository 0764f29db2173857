"""What only a browser shows of issue 14's honest pages: times formatted live in the page's zone
with the server's label, the host chart naming GPUs by PCI address, the home page's quota bars
following a desktop without a reload, and the nav collapsing behind a menu button on a phone."""

from pathlib import Path

import pytest

from allocations.services.request import request_desktop
from allocations.tests.factories import make_template
from audit.models import AuditEvent
from inventory.models import VGPUProfile
from inventory.tests.factories import make_gpu, make_host

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
PASSWORD = "pw-for-tests-1"
PHONE_SHOTS = Path("/tmp/shots")
LIVE = "() => document.getElementById('live-indicator').textContent === 'live'"


@pytest.fixture
def paris_page(browser):
    """A page whose browser lives in Europe/Paris (CET in December, CEST in summer)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, timezone_id="Europe/Paris")
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def test_live_times_are_in_the_pages_zone_with_the_servers_label(asgi_server, paris_page, login, platform_admin):
    page = paris_page
    AuditEvent.objects.create(verb="host.created", object_type="inventory.host", object_repr="gpu-1")
    login(page, asgi_server, platform_admin.username, PASSWORD)  # the login page stored the zone (tz.js)
    page.goto(f"{asgi_server}/")
    assert page.evaluate("() => document.body.dataset.tz") == "Europe/Paris"
    server_label = page.evaluate("() => document.body.dataset.tzLabel")
    assert server_label in ("CET", "CEST")
    rendered = page.locator("table td").first.inner_text()  # "Latest audit events", rendered by the server
    assert rendered.endswith(f" {server_label}"), rendered
    live = page.evaluate("() => window.portalTime.format(Date.now() / 1000, {seconds: true})")
    assert live.endswith(f" {server_label}") and live[:10] == rendered[:10], live
    # the same instant, formatted by the server and by the browser, reads the same
    stamp = page.evaluate("() => window.portalTime.format(new Date('2026-12-02T09:15:00Z'))")
    assert stamp == ("2026-12-02 10:15 CET" if server_label == "CET" else "2026-12-02 10:15 UTC+01:00")


def test_the_host_chart_names_each_gpu_by_its_pci_address(asgi_server, page, login, screenshot, platform_admin):
    host = make_host("chart-host")
    make_gpu(host, "0000:41:00.0")
    make_gpu(host, "0000:61:00.0")
    login(page, asgi_server, platform_admin.username, PASSWORD)
    page.goto(f"{asgi_server}/inventory/hosts/{host.name}/")
    page.wait_for_selector("#host-chart .u-legend")
    labels = page.locator("#host-chart .u-legend .u-series .u-label").all_inner_texts()
    assert labels[1:] == ["0000:41:00.0", "0000:61:00.0"], labels
    assert "0000" not in labels[1:]
    screenshot(page, "host-chart-legend")


def test_the_home_pages_quota_bars_follow_a_new_desktop_without_a_reload(
    asgi_server, page, login, screenshot, lab, catalog, tenant, tenant_member, in_thread
):
    lab("lab-a40=A40x1")
    tenant.quota.max_desktops = 3
    tenant.quota.save()
    template = make_template("Office", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant])
    login(page, asgi_server, tenant_member.username, PASSWORD)
    page.goto(f"{asgi_server}/")
    card = page.locator(f'section[data-tenant-id="{tenant.pk}"]')
    assert "0 of 3" in card.inner_text()
    page.wait_for_function(LIVE)
    page.evaluate("() => { window.__noReload = true; }")
    in_thread(request_desktop, actor=tenant_member, template_id=template.pk, duration_hours=1, name="Counted")
    page.wait_for_function(
        "(id) => document.querySelector(`section[data-tenant-id=\"${id}\"]`).textContent.includes('1 of 3')",
        arg=tenant.pk,
        timeout=20_000,
    )
    assert page.evaluate("() => window.__noReload") is True, "the page was reloaded"
    screenshot(page, "home-quota-live")


def test_the_nav_collapses_behind_a_menu_button_on_a_phone(asgi_server, browser, login, tenant_member):
    PHONE_SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        login(page, asgi_server, tenant_member.username, PASSWORD)
        page.goto(f"{asgi_server}/")
        button, nav = page.locator("#nav-toggle"), page.locator("#main-nav")
        assert button.is_visible() and not nav.is_visible()
        assert button.get_attribute("aria-expanded") == "false"
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390  # nothing runs off the side
        page.screenshot(path=str(PHONE_SHOTS / "phone-closed.png"), full_page=True)
        button.click()
        assert nav.is_visible() and button.get_attribute("aria-expanded") == "true"
        assert nav.locator("a", has_text="New desktop").is_visible()
        page.screenshot(path=str(PHONE_SHOTS / "phone-open.png"), full_page=True)
        button.click()
        assert not nav.is_visible()
        page.set_viewport_size({"width": 1280, "height": 800})  # wide: the nav shows, the button does not
        assert nav.is_visible() and not button.is_visible()
    finally:
        context.close()
