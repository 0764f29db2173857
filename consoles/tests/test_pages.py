"""The console page and the "Open console" buttons: who may open it, and what it gives the browser."""

import pytest

from allocations.choices import HOLDING_STATUSES, DesktopStatus
from allocations.models import Desktop
from allocations.tests.factories import make_membership, make_template, make_user
from inventory.models import VGPUProfile
from inventory.tests.factories import make_host, make_profile
from tenancy.roles import Role

pytestmark = pytest.mark.django_db


def _desktop(owner, tenant, *, status=DesktopStatus.RUNNING, name="CAD box", profile=True) -> Desktop:
    vgpu = (VGPUProfile.objects.filter(name="A40-8Q").first() or make_profile("A40-8Q")) if profile else None
    template = make_template(f"T {name}", profile=vgpu, tenants=[tenant])
    return Desktop.objects.create(
        name=name,
        tenant=tenant,
        owner=owner,
        template=template,
        profile=vgpu,
        gpu_count=1,
        vcpus=4,
        memory_mib=8192,
        framebuffer_mib=vgpu.framebuffer_mib if vgpu else 0,
        duration_hours=2,
        status=status,
        holds_capacity=status in HOLDING_STATUSES,
        host=make_host(f"gpu-{name.replace(' ', '-').lower()}"),
        domain_name="desktop-1",
    )


@pytest.fixture
def desktop(tenant, tenant_member):
    return _desktop(tenant_member, tenant)


@pytest.fixture
def colleague(tenant):
    """Another member of alice's tenant: not the desktop's owner."""
    user = make_user("carol")
    make_membership(user, Role.TENANT_MEMBER, tenant)
    return user


def _url(desktop) -> str:
    return f"/desktops/{desktop.pk}/console/"


def test_the_owner_opens_the_console_page(client, desktop, tenant_member):
    client.force_login(tenant_member)
    response = client.get(_url(desktop))
    assert response.status_code == 200
    assert response.templates[0].name == "consoles/console.html"


def test_a_platform_admin_opens_anyones_console_page(client, desktop, platform_admin):
    client.force_login(platform_admin)
    assert client.get(_url(desktop)).status_code == 200


@pytest.mark.parametrize("persona", ["auditor", "colleague", "outsider"])
def test_auditors_other_members_and_other_tenants_get_not_found(client, desktop, persona, request):
    client.force_login(request.getfixturevalue(persona))
    assert client.get(_url(desktop)).status_code == 404


def test_a_missing_desktop_is_not_found(client, desktop, tenant_member):
    client.force_login(tenant_member)
    assert client.get(f"/desktops/{desktop.pk + 100}/console/").status_code == 404


def test_anonymous_users_are_sent_to_log_in(client, desktop):
    response = client.get(_url(desktop))
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next=/desktops/{desktop.pk}/console/"


def test_the_page_gives_the_script_its_data_without_inline_code(client, desktop, tenant_member):
    client.force_login(tenant_member)
    page = client.get(_url(desktop)).content.decode()
    assert f'data-desktop-id="{desktop.pk}"' in page
    assert 'data-desktop-name="CAD box"' in page
    assert f'data-ticket-url="/api/desktops/{desktop.pk}/console/"' in page
    assert 'data-running="1"' in page
    assert '<script type="module" src="/static/js/console.js"></script>' in page
    assert 'id="console-screen"' in page and 'id="console-status"' in page
    for control in ("ctrl-alt-del", "clipboard", "send-text", "scale", "fullscreen"):
        assert f'data-action="{control}"' in page, control
    assert "csrfmiddlewaretoken" in page  # the ticket POST's CSRF token, should the cookie be unreadable
    # Only data in the page: every script is loaded from static files (a future CSP without 'unsafe-inline').
    for script in page.split("<script")[1:]:
        assert " src=" in script.split(">")[0], script[:120]
    assert "Rescue console" not in page


def test_a_desktop_that_is_not_running_says_so(client, tenant, tenant_member):
    desktop = _desktop(tenant_member, tenant, status=DesktopStatus.PROVISIONING)
    client.force_login(tenant_member)
    page = client.get(_url(desktop)).content.decode()
    assert 'data-running="0"' in page
    assert 'data-not-running="The desktop is not running (status: provisioning)"' in page


def test_a_passthrough_desktops_console_says_it_is_a_rescue_console(client, tenant, tenant_member):
    desktop = _desktop(tenant_member, tenant, profile=False, name="Whole GPU")
    assert desktop.is_passthrough
    client.force_login(tenant_member)
    page = client.get(_url(desktop)).content.decode()
    assert "Rescue console" in page and "not the GPU's output" in page


def test_the_vendored_novnc_client_is_served_from_static(client, desktop):
    from django.contrib.staticfiles import finders

    for path in ("vendor/novnc/core/rfb.js", "vendor/novnc/vendor/pako/lib/zlib/inflate.js", "js/console.js"):
        assert finders.find(path), path
    version = open(finders.find("vendor/novnc/VERSION")).read().strip()
    assert version == "@novnc/novnc 1.7.0"


# --- the "Open console" buttons --------------------------------------------------------------------


def test_the_desktop_page_offers_the_console_while_it_runs(client, desktop, tenant_member):
    client.force_login(tenant_member)
    page = client.get(f"/desktops/{desktop.pk}/").content.decode()
    assert f'href="/desktops/{desktop.pk}/console/"' in page and "Open console" in page
    assert "VNC on the host" not in page


@pytest.mark.parametrize("status", [DesktopStatus.REQUESTED, DesktopStatus.PROVISIONING, DesktopStatus.RELEASED])
def test_the_desktop_page_offers_no_console_unless_it_runs(client, tenant, tenant_member, status):
    desktop = _desktop(tenant_member, tenant, status=status)
    client.force_login(tenant_member)
    summary = client.get(f"/desktops/{desktop.pk}/parts/summary/").content.decode()
    assert "Open console" not in summary and "/console/" not in summary
    assert '<dd data-field="console">—</dd>' in summary


def test_an_auditor_sees_the_desktop_but_no_console_button(client, desktop, auditor):
    client.force_login(auditor)
    page = client.get(f"/desktops/{desktop.pk}/").content.decode()
    assert desktop.name in page and "Open console" not in page


def test_a_platform_admin_gets_the_console_button(client, desktop, platform_admin):
    client.force_login(platform_admin)
    page = client.get(f"/desktops/{desktop.pk}/").content.decode()
    assert f'href="/desktops/{desktop.pk}/console/"' in page


def test_the_home_page_row_offers_the_console_of_running_desktops_only(client, tenant, tenant_member):
    running = _desktop(tenant_member, tenant, name="Running one")
    starting = _desktop(tenant_member, tenant, status=DesktopStatus.PROVISIONING, name="Starting one")
    client.force_login(tenant_member)
    home = client.get("/").content.decode()
    assert f'href="/desktops/{running.pk}/console/"' in home
    assert f'href="/desktops/{starting.pk}/console/"' not in home
    row = client.get(f"/desktops/{running.pk}/parts/row/").content.decode()  # the row alone, as live.js fetches it
    assert f'href="/desktops/{running.pk}/console/"' in row
    assert "Open console" not in client.get(f"/desktops/{starting.pk}/parts/row/").content.decode()


def test_an_auditor_who_is_also_a_member_gets_no_button_on_others_rows(client, tenant, desktop, colleague):
    make_membership(colleague, Role.AUDITOR)  # sees every desktop on the home page, acts on its own only
    client.force_login(colleague)
    home = client.get("/").content.decode()
    assert f'data-desktop-id="{desktop.pk}"' in home
    assert f'href="/desktops/{desktop.pk}/console/"' not in home
