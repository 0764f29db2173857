"""The desktops API: request, errors people can read, actions, isolation."""

import pytest

from allocations.tests.factories import make_template
from inventory.models import VGPUProfile

pytestmark = pytest.mark.django_db


@pytest.fixture
def template(catalog, tenant):
    tenant.quota.max_framebuffer_mib = 100000
    tenant.quota.save()
    return make_template("CAD", profile=VGPUProfile.objects.get(name="A40-24Q"), tenants=[tenant])


def test_request_and_release_through_the_api(api, lab, tenant_member, template, run_tasks):
    lab()
    client = api.as_user(tenant_member)
    with run_tasks():
        created = client.post(
            "/api/desktops/", {"template": template.pk, "duration_hours": 2, "name": "Mine"}, format="json"
        )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["status"], body["profile"], body["owner"], body["name"]) == ("requested", "A40-24Q", "alice", "Mine")
    shown = client.get(f"/api/desktops/{body['id']}/").json()
    assert shown["status"] == "running" and shown["vnc_port"] is None  # the test driver assigns no VNC port
    assert "host_name" not in shown and "gpu_uuids" not in shown  # where it runs is the operators' business
    extended = client.post(f"/api/desktops/{body['id']}/extend/", {"hours": 1}, format="json")
    assert extended.status_code == 200 and extended.json()["duration_hours"] == 3
    with run_tasks():
        released = client.post(f"/api/desktops/{body['id']}/release/")
    assert released.status_code == 200 and released.json()["status"] == "stopping"
    assert client.get(f"/api/desktops/{body['id']}/").json()["status"] == "released"
    again = client.post(f"/api/desktops/{body['id']}/release/")
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_transition"


def test_over_quota_is_a_409_with_used_and_allowed(api, lab, tenant, tenant_member, template):
    lab()
    tenant.quota.max_desktops = 1
    tenant.quota.save()
    client = api.as_user(tenant_member)
    assert (
        client.post("/api/desktops/", {"template": template.pk, "duration_hours": 1}, format="json").status_code == 201
    )
    over = client.post("/api/desktops/", {"template": template.pk, "duration_hours": 1}, format="json")
    assert over.status_code == 409
    error = over.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["details"] == {"resource": "desktops", "used": 1, "allowed": 1, "requested": 1}


def test_no_capacity_is_a_409_saying_what_is_short(api, catalog, tenant_member, template):
    response = api.as_user(tenant_member).post(
        "/api/desktops/", {"template": template.pk, "duration_hours": 1}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["error"] == {
        "status": 409,
        "code": "no_capacity",
        "message": "No online host has an A40 GPU in vGPU mode.",
        "details": {"resource": "gpu_model"},
    }


@pytest.mark.parametrize(
    "body,field",
    [
        ({"duration_hours": 1}, "template"),
        ({"template": 1, "duration_hours": 0}, "duration_hours"),
        ({"template": "x", "duration_hours": 1}, "template"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api, tenant_member, body, field):
    response = api.as_user(tenant_member).post("/api/desktops/", body, format="json")
    assert response.status_code == 400 and field in response.json()["error"]["fields"]


def test_operators_see_where_a_desktop_runs(api, lab, tenant_member, auditor, template):
    lab()
    created = (
        api.as_user(tenant_member)
        .post("/api/desktops/", {"template": template.pk, "duration_hours": 1}, format="json")
        .json()
    )
    shown = api.as_user(auditor).get(f"/api/desktops/{created['id']}/").json()
    assert shown["host_name"] == "lab-a40" and len(shown["gpu_uuids"]) == 1


def test_others_desktops_are_not_found(api, lab, tenant_member, outsider, auditor, template):
    lab()
    created = (
        api.as_user(tenant_member)
        .post("/api/desktops/", {"template": template.pk, "duration_hours": 1}, format="json")
        .json()
    )
    for verb in ("release", "reboot", "extend"):
        response = api.as_user(outsider).post(f"/api/desktops/{created['id']}/{verb}/", {"hours": 1}, format="json")
        assert response.status_code == 404
    assert api.as_user(outsider).get("/api/desktops/").json()["count"] == 0
    assert api.as_user(auditor).get("/api/desktops/").json()["count"] == 1
    assert api.as_user(auditor).post(f"/api/desktops/{created['id']}/release/").status_code == 403


def test_admin_drains_a_host(api, lab, platform_admin, tenant_member, template):
    host = lab()
    response = api.as_user(platform_admin).post(
        f"/api/hosts/{host.pk}/maintenance/", {"reason": "BIOS update"}, format="json"
    )
    assert response.status_code == 200 and response.json()["state"] == "maintenance"
    refused = api.as_user(tenant_member).post(
        "/api/desktops/", {"template": template.pk, "duration_hours": 1}, format="json"
    )
    assert refused.status_code == 409
    assert api.as_user(platform_admin).post(f"/api/hosts/{host.pk}/activate/").json()["state"] == "online"


def test_an_auditor_who_is_also_a_member_acts_only_on_own_desktops(
    api, lab, tenant_member, outsider, template, other_tenant
):
    from allocations.tests.factories import make_membership
    from tenancy.roles import Role

    lab()
    make_membership(outsider, Role.AUDITOR)  # reads everything, may act on nothing but their own
    template.allowed_tenants.add(other_tenant)
    theirs = (
        api.as_user(tenant_member)
        .post("/api/desktops/", {"template": template.pk, "duration_hours": 1}, format="json")
        .json()
    )
    client = api.as_user(outsider)
    assert client.get(f"/api/desktops/{theirs['id']}/").status_code == 200  # auditors read
    for verb in ("release", "reboot", "extend"):
        assert client.post(f"/api/desktops/{theirs['id']}/{verb}/", {"hours": 1}, format="json").status_code == 404
    other_tenant.quota.max_framebuffer_mib = 100000
    other_tenant.quota.save()
    mine = client.post("/api/desktops/", {"template": template.pk, "duration_hours": 1}, format="json").json()
    assert client.post(f"/api/desktops/{mine['id']}/release/").status_code == 200
