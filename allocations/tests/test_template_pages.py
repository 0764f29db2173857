"""Template pages and API: create, edit and retire through the audited services; a retired template takes no
new desktop (in words) while its running desktops keep it; a template's own maximum duration; and where
a template could run now, host by host, and why not."""

import pytest

from allocations.exceptions import NotAllowed, QuotaExceeded
from allocations.models import DesktopTemplate
from allocations.services.request import request_desktop
from allocations.services.templates import retire_template
from allocations.tests.factories import make_template
from audit.models import AuditEvent
from core.errors import Conflict
from inventory.choices import GPUMode, HostState
from inventory.models import VGPUProfile
from inventory.tests.factories import make_gpu, make_host

pytestmark = pytest.mark.django_db


def profile(name):
    return VGPUProfile.objects.get(name=name)


@pytest.fixture
def roomy(tenant):
    tenant.quota.max_desktops = 20
    tenant.quota.max_framebuffer_mib = 10**6
    tenant.quota.max_desktop_hours = 48
    tenant.quota.save()
    return tenant


FORM = {
    "name": "CAD",
    "description": "For drawing",
    "kind": "vgpu",
    "profile": "A40-8Q",
    "profile_series": "Q",
    "gpu_count": "1",
    "vcpus": "4",
    "memory_gib": "8",
    "disk_image": "debian-12.qcow2",
    "max_duration_hours": "12",
    "is_active": "on",
}


def test_admin_creates_a_template_from_the_page_audited(client, catalog, platform_admin, tenant):
    client.force_login(platform_admin)
    response = client.post("/templates/new/", {**FORM, "allowed_tenants": [tenant.pk]})
    template = DesktopTemplate.objects.get(name="CAD")
    assert response.status_code == 302 and response["Location"] == f"/templates/{template.pk}/"
    assert template.profile.name == "A40-8Q" and template.memory_mib == 8192 and template.max_duration_hours == 12
    assert list(template.allowed_tenants.all()) == [tenant]
    event = AuditEvent.objects.get(verb="desktoptemplate.created")
    assert event.actor_id == platform_admin.pk and event.after["name"] == "CAD"


def test_share_and_whole_and_no_gpu_kinds_map_to_the_model(client, catalog, platform_admin):
    client.force_login(platform_admin)
    client.post("/templates/new/", {**FORM, "name": "Quarter", "kind": "vgpu-share", "share_percent": "25"})
    client.post(
        "/templates/new/", {**FORM, "name": "Train", "kind": "whole", "gpu_count": "2", "gpu_models": "A40, L40S"}
    )
    client.post("/templates/new/", {**FORM, "name": "Office", "kind": "none"})
    quarter, train, office = (DesktopTemplate.objects.get(name=n) for n in ("Quarter", "Train", "Office"))
    assert (quarter.kind, quarter.gpu_share_milli, quarter.profile_id) == ("vgpu-share", 250, None)
    assert (train.kind, train.gpu_count, train.gpu_models) == ("whole", 2, ["A40", "L40S"])
    assert (office.kind, office.gpu_count) == ("none", 0)


def test_bad_input_is_refused_in_words_and_nothing_is_lost(client, catalog, platform_admin):
    client.force_login(platform_admin)
    response = client.post("/templates/new/", {**FORM, "profile": "", "memory_gib": "8.5", "vcpus": "4"})
    page = response.content.decode()
    assert response.status_code == 200
    assert "Choose the vGPU profile." in page
    assert 'value="8.5"' in page and "For drawing" in page
    assert not DesktopTemplate.objects.exists()
    response = client.post("/templates/new/", {**FORM, "kind": "none", "gpu_models": "A40"})
    assert "Only a share or whole GPUs name board models." in response.content.decode()
    make_template("CAD")
    response = client.post("/templates/new/", FORM)
    assert response.status_code == 200 and "already exists" in response.content.decode()
    assert not AuditEvent.objects.filter(verb="desktoptemplate.created").exists()


def test_admin_edits_a_template_audited(client, catalog, platform_admin, tenant, other_tenant):
    template = make_template("CAD", profile=profile("A40-8Q"), tenants=[tenant])
    client.force_login(platform_admin)
    form = client.get(f"/templates/{template.pk}/edit/").content.decode()
    assert 'value="CAD"' in form and 'value="8.0"' in form
    data = {**FORM, "vcpus": "8", "allowed_tenants": [tenant.pk, other_tenant.pk]}
    assert client.post(f"/templates/{template.pk}/edit/", data).status_code == 302
    template.refresh_from_db()
    assert template.vcpus == 8 and set(template.allowed_tenants.all()) == {tenant, other_tenant}
    event = AuditEvent.objects.get(verb="desktoptemplate.updated")
    assert event.before["vcpus"] == 4 and event.after["vcpus"] == 8


def test_retired_template_takes_no_new_desktop_but_running_ones_keep_it(
    client, lab, roomy, tenant_member, platform_admin, api
):
    lab("a40=A40x1")
    template = make_template("CAD", profile=profile("A40-8Q"), tenants=[roomy], vcpus=1, memory_mib=1024)
    running = request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=2)
    client.force_login(platform_admin)
    assert client.post(f"/templates/{template.pk}/retire/").status_code == 302
    template.refresh_from_db()
    assert template.retired_at is not None and not template.is_active
    event = AuditEvent.objects.get(verb="desktoptemplate.retired")
    assert event.actor_id == platform_admin.pk and event.after["is_active"] is False
    with pytest.raises(NotAllowed, match=r"CAD was retired on \d{4}-\d\d-\d\d: it takes no new desktops"):
        request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=2)
    response = api.as_user(tenant_member).post("/api/desktops/", {"template": template.pk, "duration_hours": 2})
    assert response.status_code == 403 and "was retired" in response.json()["error"]["message"]
    running.refresh_from_db()
    assert running.template_id == template.pk and running.holds_capacity
    assert "retired" in client.get("/templates/").content.decode()


def test_retiring_twice_or_editing_a_retired_template_is_refused(api, catalog, platform_admin, tenant):
    template = make_template("CAD", profile=profile("A40-8Q"), tenants=[tenant])
    admin = api.as_user(platform_admin)
    assert admin.post(f"/api/templates/{template.pk}/retire/").json()["retired_at"]
    again = admin.post(f"/api/templates/{template.pk}/retire/")
    assert again.status_code == 409 and "already retired" in again.json()["error"]["message"]
    edit = admin.patch(f"/api/templates/{template.pk}/", {"is_active": True}, format="json")
    assert edit.status_code == 409 and "is retired" in edit.json()["error"]["message"]
    assert AuditEvent.objects.filter(verb="desktoptemplate.retired").count() == 1
    with pytest.raises(Conflict):
        retire_template(template, actor=platform_admin)


def test_a_template_caps_its_desktops_duration(lab, roomy, tenant_member):
    lab("a40=A40x1")
    template = make_template("Short", profile=profile("A40-8Q"), tenants=[roomy], max_duration_hours=4)
    with pytest.raises(QuotaExceeded, match="A desktop of Short may last at most 4 hours; you asked for 5."):
        request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=5)
    assert request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=4).duration_hours == 4


@pytest.fixture
def hosts(catalog):
    """One host per reason, and one where CAD (A40-8Q, 4 vCPUs, 8 GiB) fits."""
    full = make_host("full")
    make_gpu(full, current_profile=profile("A40-8Q"), instances_used=6)
    other = make_host("other")
    make_gpu(other, current_profile=profile("A40-24Q"), instances_used=1)
    make_gpu(make_host("a16"), model="A16", framebuffer_mib=16384)
    make_gpu(make_host("maint", state=HostState.MAINTENANCE))
    make_gpu(make_host("down", state=HostState.OFFLINE))
    make_gpu(make_host("tight", cpu_cores=2))
    make_gpu(make_host("pass"), mode=GPUMode.PASSTHROUGH)
    make_gpu(make_host("zfree"))
    return make_template("CAD", profile=profile("A40-8Q"), vcpus=4, memory_mib=8192)


def test_template_page_says_where_it_could_run_and_why_not(client, hosts, auditor):
    client.force_login(auditor)
    response = client.get(f"/templates/{hosts.pk}/")
    placement = {v.host.name: (v.fits, v.reason) for v in response.context["placement"].verdicts}
    assert placement == {
        "a16": (False, "No A40 GPU here (it has 1 × A16)."),
        "down": (False, "Host is offline: its worker or libvirt does not answer."),
        "full": (False, "No GPU can take it: 1 full of A40-8Q (6/6)."),
        "maint": (False, "Host is in maintenance: it takes no new desktops."),
        "other": (False, "No GPU can take it: 1 runs A40-24Q (another profile)."),
        "pass": (False, "No GPU can take it: 1 passthrough-only."),
        "tight": (False, "Needs 4 vCPUs and 8.0 GiB RAM; 2 vCPUs and 256.0 GiB free."),
        "zfree": (True, "Fits: an A40-8Q instance on an A40."),
    }
    assert response.context["placement"].choice_host == "zfree"
    assert "engine's choice</span>" in response.content.decode()


def test_placement_check_claims_nothing_and_answers_in_the_api(api, hosts, platform_admin):
    from inventory.models import GPU

    before = list(GPU.objects.order_by("pk").values_list("instances_used", "current_profile"))
    body = api.as_user(platform_admin).get(f"/api/templates/{hosts.pk}/placement/").json()
    assert body["would_place_on"] == "zfree" and body["why_not"] == ""
    assert {h["host"] for h in body["hosts"] if h["fits"]} == {"zfree"}
    assert list(GPU.objects.order_by("pk").values_list("instances_used", "current_profile")) == before


def test_nowhere_to_run_says_why(api, catalog, platform_admin):
    template = make_template("Train", gpu_count=2, gpu_models=["L40S"])
    make_gpu(make_host("a40", passthrough_capable=True), mode=GPUMode.PASSTHROUGH)
    body = api.as_user(platform_admin).get(f"/api/templates/{template.pk}/placement/").json()
    assert body["would_place_on"] is None and "L40S" in body["why_not"]
    assert body["hosts"] == [
        {
            "host": "a40",
            "state": "online",
            "fits": False,
            "chosen": False,
            "reason": "No L40S GPU here (it has 1 × A40).",
        }
    ]


# -- who may do what ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "persona, read, write",
    [("platform_admin", 200, 200), ("auditor", 200, 403), ("tenant_member", 403, 403), ("outsider", 403, 403)],
)
def test_page_role_matrix(client, catalog, personas, tenant, persona, read, write):
    template = make_template("CAD", profile=profile("A40-8Q"), tenants=[tenant])
    client.force_login(personas[persona])
    assert client.get("/templates/").status_code == read
    assert client.get(f"/templates/{template.pk}/").status_code == read
    assert client.get("/templates/new/").status_code == write
    assert client.get(f"/templates/{template.pk}/edit/").status_code == write
    retire = client.post(f"/templates/{template.pk}/retire/")
    assert retire.status_code == (302 if write == 200 else 403)
    template.refresh_from_db()
    assert (template.retired_at is not None) == (write == 200)


def test_missing_template_page_is_404(client, catalog, platform_admin):
    client.force_login(platform_admin)
    assert client.get("/templates/999999/").status_code == 404
    assert client.post("/templates/999999/retire/").status_code == 404


@pytest.mark.parametrize(
    "persona, placement, retire",
    [("platform_admin", 200, 200), ("auditor", 200, 403), ("tenant_member", 403, 403), ("outsider", 403, 403)],
)
def test_api_role_matrix(api, catalog, personas, tenant, persona, placement, retire):
    template = make_template("CAD", profile=profile("A40-8Q"), tenants=[tenant])
    client = api.as_user(personas[persona])
    got = client.get(f"/api/templates/{template.pk}/placement/")
    assert got.status_code == placement
    assert client.post(f"/api/templates/{template.pk}/retire/").status_code == retire
