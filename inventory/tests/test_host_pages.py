"""The platform admin's host pages and their API (issue 16): register by libvirt URI after a test
connection that saves nothing, edit, maintenance with a reason, retire (kept, refused while desktops
hold it); every page for its role only."""

import pytest

from allocations.services.request import request_desktop
from allocations.tests.factories import make_template
from audit.models import AuditEvent
from inventory.models import GPU, Host, VGPUProfile
from inventory.services.lab import LabHostSpec, write_lab_xml

pytestmark = pytest.mark.django_db


@pytest.fixture
def lab_uri(catalog, tmp_path):
    """A libvirt test-driver URI of a host with two A40s that is not registered yet."""
    path = write_lab_xml(LabHostSpec.parse("gpu-new=A40x2"), tmp_path / "new")
    return f"test://{path}"


def register_form(uri, **extra):
    return {"name": "gpu-new", "libvirt_uri": uri, "console_relay": "", "telemetry_source": "simulated", **extra}


def test_test_connection_shows_what_discovery_found_and_saves_nothing(client, platform_admin, lab_uri):
    client.force_login(platform_admin)
    events = AuditEvent.objects.count()
    response = client.post("/inventory/new-host/", {**register_form(lab_uri), "test": "1"})
    assert response.status_code == 200
    page = response.content.decode()
    for shown in ("0000:41:00.0", "0000:61:00.0", "A40-8Q", "48.0 GiB", "64 logical CPUs", "256.0 GiB"):
        assert shown in page, shown
    assert page.count('data-pci="') == 2
    assert not Host.objects.exists() and not GPU.objects.exists()
    assert AuditEvent.objects.count() == events  # a test connection records nothing
    assert 'value="gpu-new"' in page  # the form keeps what was typed


@pytest.mark.parametrize(
    "uri,words",
    [
        ("test:///nowhere/missing.xml", "Could not read test:///nowhere/missing.xml: cannot connect"),
        ("qemu+tcp://127.0.0.1:1/system", "Could not read qemu+tcp://127.0.0.1:1/system: cannot connect"),
    ],
)
def test_an_unreachable_uri_is_said_in_words(client, platform_admin, catalog, uri, words):
    client.force_login(platform_admin)
    page = client.post("/inventory/new-host/", {**register_form(uri), "test": "1"}).content.decode()
    assert words in page
    response = client.post("/inventory/new-host/", {**register_form(uri), "register": "1"}, follow=True)
    assert "Nothing was saved." in response.content.decode()
    assert not Host.objects.exists()


def test_a_host_without_nvidia_gpus_is_said_in_words(client, platform_admin, catalog):
    client.force_login(platform_admin)
    page = client.post("/inventory/new-host/", {**register_form("test:///default"), "test": "1"}).content.decode()
    assert "libvirt found no NVIDIA GPU on this host: it can serve only desktops without a GPU." in page


def test_register_saves_the_host_and_syncs_it(client, platform_admin, lab_uri):
    client.force_login(platform_admin)
    response = client.post(
        "/inventory/new-host/", {**register_form(lab_uri, console_relay="10.0.0.5:5900"), "register": "1"}
    )
    assert response.status_code == 302 and response["Location"] == "/inventory/hosts/gpu-new/"
    host = Host.objects.get(name="gpu-new")
    assert (host.state, host.console_relay, host.telemetry_source) == ("online", "10.0.0.5:5900", "simulated")
    assert host.lab_xml and host.cpu_cores == 64 and host.gpus.count() == 2
    assert AuditEvent.objects.filter(verb="host.created", actor_id=platform_admin.pk).exists()
    detail = client.get(response["Location"]).content.decode()
    assert "gpu-new is registered: gpu-new: 2 GPU(s)" in detail


def test_a_bad_form_answers_400_with_the_fields_words(client, platform_admin, lab, lab_uri):
    lab("lab-a40=A40x1")
    client.force_login(platform_admin)
    response = client.post("/inventory/new-host/", {**register_form(lab_uri, name="lab-a40"), "register": "1"})
    assert response.status_code == 400
    assert "Host with this Name already exists." in response.content.decode()
    response = client.post("/inventory/new-host/", {**register_form(lab_uri, name="Bad Name!"), "test": "1"})
    assert response.status_code == 400 and "Use lower-case letters" in response.content.decode()


def test_the_api_tests_a_connection_without_saving(api, platform_admin, auditor, tenant_member, lab_uri):
    body = {"libvirt_uri": lab_uri, "telemetry_source": "simulated"}
    response = api.as_user(platform_admin).post("/api/hosts/test-connection/", body, format="json")
    assert response.status_code == 200, response.content
    found = response.json()
    assert found["ok"] is True and found["cpu_cores"] == 64 and found["memory_mib"] == 262144
    assert [g["pci_address"] for g in found["gpus"]] == ["0000:41:00.0", "0000:61:00.0"]
    assert found["gpus"][0]["framebuffer_mib"] == 49152
    assert "A40-8Q" in {t["profile"] for t in found["gpus"][0]["vgpu_types"]}
    assert not Host.objects.exists()
    bad = api.as_user(platform_admin).post("/api/hosts/test-connection/", {"libvirt_uri": "test:///x/y.xml"})
    assert bad.status_code == 200 and bad.json()["ok"] is False and "cannot connect" in bad.json()["error"]
    nonsense = api.as_user(platform_admin).post("/api/hosts/test-connection/", {"libvirt_uri": "system"})
    assert nonsense.status_code == 400 and "A libvirt URI looks like" in nonsense.json()["error"]["message"]
    for other in (auditor, tenant_member):
        assert api.as_user(other).post("/api/hosts/test-connection/", body, format="json").status_code == 403


def test_edit_changes_relay_telemetry_and_notes_audited(client, platform_admin, lab):
    host = lab("lab-a40=A40x1")
    client.force_login(platform_admin)
    assert client.get(f"/inventory/hosts/{host.name}/edit/").status_code == 200
    response = client.post(
        f"/inventory/hosts/{host.name}/edit/",
        {"console_relay": "10.1.2.3:5999", "telemetry_source": "nvml", "notes": "rack 4"},
    )
    assert response.status_code == 302
    host.refresh_from_db()
    assert (host.console_relay, host.telemetry_source, host.notes) == ("10.1.2.3:5999", "nvml", "rack 4")
    event = AuditEvent.objects.filter(verb="host.updated").latest("seq")
    assert event.after["console_relay"] == "10.1.2.3:5999"


def test_maintenance_needs_a_reason_and_keeps_it_on_the_host(client, platform_admin, lab):
    host = lab("lab-a40=A40x1")
    client.force_login(platform_admin)
    page = client.post(f"/inventory/hosts/{host.name}/state/maintenance/", {"reason": ""}, follow=True)
    assert "Say why the host goes into maintenance" in page.content.decode()
    assert Host.objects.get(pk=host.pk).state == "online"
    client.post(f"/inventory/hosts/{host.name}/state/maintenance/", {"reason": "BIOS update"})
    host.refresh_from_db()
    assert (host.state, host.maintenance_reason) == ("maintenance", "BIOS update") and host.maintenance_since
    assert "BIOS update" in client.get(f"/inventory/hosts/{host.name}/").content.decode()
    client.post(f"/inventory/hosts/{host.name}/state/online/")
    host.refresh_from_db()
    assert (host.state, host.maintenance_reason, host.maintenance_since) == ("online", "", None)


@pytest.fixture
def desktop_on(tenant, tenant_member, catalog):
    def make(host):
        tenant.quota.max_framebuffer_mib = 100000
        tenant.quota.save()
        template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant])
        return request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=2, queue_provisioning=False)

    return make


def test_maintenance_reason_is_shown_on_the_owners_desktop_page(client, platform_admin, tenant_member, lab, desktop_on):
    host = lab("lab-a40=A40x1")
    desktop = desktop_on(host)
    admin = type(client)()
    admin.force_login(platform_admin)
    admin.post(f"/inventory/hosts/{host.name}/state/maintenance/", {"reason": "BIOS update"})
    client.force_login(tenant_member)
    head = client.get(f"/desktops/{desktop.pk}/parts/head/").content.decode()
    assert "Its host is in maintenance" in head and "BIOS update" in head


def test_retire_is_refused_while_a_desktop_holds_the_host_then_keeps_it_apart(
    client, api, platform_admin, lab, desktop_on
):
    host = lab("lab-a40=A40x1")
    desktop = desktop_on(host)
    client.force_login(platform_admin)
    page = client.post(f"/inventory/hosts/{host.name}/retire/", follow=True).content.decode()
    assert "lab-a40 still holds 1 desktop (running or in flight)" in page
    response = api.as_user(platform_admin).post(f"/api/hosts/{host.pk}/retire/")
    assert response.status_code == 409
    assert response.json()["error"]["message"].startswith("lab-a40 still holds 1 desktop")
    assert Host.objects.get(pk=host.pk).state == "online"

    from allocations.services import lifecycle

    lifecycle.transition(desktop.pk, "failed", reason="test: ended")  # no longer holds it
    response = api.as_user(platform_admin).post(f"/api/hosts/{host.pk}/retire/")
    assert response.status_code == 200 and response.json()["state"] == "retired" and response.json()["retired_at"]
    assert AuditEvent.objects.filter(verb="host.retired").count() == 1
    listing = client.get("/inventory/hosts/").content.decode()
    active, retired = listing.split('id="retired-hosts"')
    assert 'data-host="lab-a40"' not in active and 'data-host="lab-a40"' in retired
    assert Host.objects.filter(pk=host.pk).exists()  # kept for its history
    # never back in service, and never placed on
    back = api.as_user(platform_admin).post(f"/api/hosts/{host.pk}/activate/")
    assert back.status_code == 409 and "retired" in back.json()["error"]["message"]
    assert Host.objects.online().filter(pk=host.pk).count() == 0


def test_the_api_maintenance_action_needs_a_reason(api, platform_admin, lab):
    host = lab("lab-a40=A40x1")
    client = api.as_user(platform_admin)
    assert client.post(f"/api/hosts/{host.pk}/maintenance/", {}, format="json").status_code == 400
    body = client.post(f"/api/hosts/{host.pk}/maintenance/", {"reason": "fans"}, format="json").json()
    assert (body["state"], body["maintenance_reason"]) == ("maintenance", "fans") and body["maintenance_since"]


PAGES = {
    # name: (method, path, roles that may)
    "list": ("get", "/inventory/hosts/", {"platform_admin", "auditor"}),
    "detail": ("get", "/inventory/hosts/lab-a40/", {"platform_admin", "auditor"}),
    "new": ("get", "/inventory/new-host/", {"platform_admin"}),
    "edit": ("get", "/inventory/hosts/lab-a40/edit/", {"platform_admin"}),
    "drain": ("get", "/inventory/hosts/lab-a40/drain/", {"platform_admin"}),
    "maintenance": ("post", "/inventory/hosts/lab-a40/state/maintenance/", {"platform_admin"}),
    "retire": ("post", "/inventory/hosts/lab-a40/retire/", {"platform_admin"}),
}
MATRIX = [
    (page, persona) for page in PAGES for persona in ("platform_admin", "auditor", "tenant_member", "outsider", None)
]


@pytest.mark.parametrize("page,persona", MATRIX, ids=[f"{p}-{who or 'anonymous'}" for p, who in MATRIX])
def test_role_matrix_of_the_host_pages(client, personas, lab, page, persona):
    lab("lab-a40=A40x1")
    method, path, allowed = PAGES[page]
    if persona:
        client.force_login(personas[persona])
    data = {"reason": "matrix"} if method == "post" else None
    response = getattr(client, method)(path, data) if data else getattr(client, method)(path)
    if persona is None:
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    elif persona in allowed:
        assert response.status_code in (200, 302)
    else:
        assert response.status_code == 403
