"""The capacity what-if page in a real browser (issue 16): a platform admin opens it from the nav, picks
a host to drain and a host to add, runs it, and reads before and after side by side and in words."""

from datetime import timedelta

import pytest
from django.utils import timezone

from allocations.choices import DesktopStatus
from allocations.models import Desktop
from allocations.tests.factories import make_template
from inventory.tests.factories import make_gpu, make_host, make_profile

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
PASSWORD = "pw-for-tests-1"


@pytest.fixture
def fleet_and_history(tenant, tenant_member):
    """lab-a: 2 A40 boards, lab-b: 1 (A40-8Q: 6 to a board); fourteen CAD desktops at once, a day ago."""
    profile = make_profile("A40-8Q")
    a, b = make_host("lab-a"), make_host("lab-b")
    make_gpu(a, "0000:41:00.0")
    make_gpu(a, "0000:42:00.0")
    make_gpu(b, "0000:41:00.0")
    template = make_template("CAD workstation", profile=profile, tenants=[tenant])
    requested = timezone.now() - timedelta(days=1)
    for k in range(14):
        d = Desktop.objects.create(
            name=f"cad-{k}",
            tenant=tenant,
            owner=tenant_member,
            template=template,
            profile=profile,
            vcpus=4,
            memory_mib=8192,
            framebuffer_mib=8192,
            duration_hours=8,
            status=DesktopStatus.RELEASED,
            holds_capacity=False,
        )
        Desktop.objects.filter(pk=d.pk).update(
            requested_at=requested, started_at=requested, ended_at=requested + timedelta(hours=8)
        )


def test_admin_drains_a_host_and_reads_what_would_be_refused(
    asgi_server, page, login, screenshot, platform_admin, fleet_and_history
):
    login(page, asgi_server, platform_admin.username, PASSWORD)
    with page.expect_navigation():
        page.click("#main-nav a:has-text('What-if')")
    assert page.url == f"{asgi_server}/capacity/what-if/"
    page.check("input[name=drain][value=lab-b]")
    screenshot(page, "whatif-form")
    with page.expect_navigation():
        page.click("button:has-text('Run')")
    summary = page.locator("#whatif-result .summary").inner_text()
    assert "Draining lab-b would refuse 2 of 14 requests (14.3%) instead of 0 (0.0%)" in summary
    row = page.locator("#whatif-templates tbody tr", has_text="CAD workstation")
    assert row.locator("td").all_inner_texts() == ["CAD workstation", "14", "0", "2"]
    assert page.is_checked("input[name=drain][value=lab-b]")  # the form keeps what was asked
    screenshot(page, "whatif-drain-result")

    # now also add a host like lab-a: nothing refused
    page.select_option("select[name=like]", "lab-a")
    with page.expect_navigation():
        page.click("button:has-text('Run')")
    summary = page.locator("#whatif-result .summary").inner_text()
    assert "Draining lab-b and adding 1 host like lab-a would refuse 0 of 14 requests (0.0%)" in summary
    screenshot(page, "whatif-drain-and-add-result")
