"""Tenants, quotas, memberships and templates through the API: validation, audit, clear errors."""

import pytest
from django.db import IntegrityError, transaction

from allocations.models import DesktopTemplate, ProfileQuota
from allocations.tests.factories import make_template
from audit.models import AuditEvent
from inventory.tests.factories import make_profile
from tenancy.models import Membership, Tenant
from tenancy.roles import Role

pytestmark = pytest.mark.django_db


def test_creating_a_tenant_creates_its_quota_in_one_audited_transaction(api, platform_admin):
    response = api.as_user(platform_admin).post(
        "/api/tenants/",
        {"name": "Initech", "slug": "initech", "quota": {"max_desktops": 3, "max_desktop_hours": 4}},
        format="json",
    )
    assert response.status_code == 201, response.content
    tenant = Tenant.objects.get(slug="initech")
    assert (tenant.quota.max_desktops, tenant.quota.max_desktop_hours) == (3, 4)
    verbs = list(AuditEvent.objects.filter(tenant_id=tenant.pk).order_by("id").values_list("verb", flat=True))
    assert verbs == ["quota.created", "tenant.created"]


def test_invalid_quota_on_tenant_create_leaves_no_tenant(api, platform_admin):
    response = api.as_user(platform_admin).post(
        "/api/tenants/", {"name": "Initech", "slug": "initech", "quota": {"max_desktop_hours": 0}}, format="json"
    )
    assert response.status_code == 400
    assert "quota.max_desktop_hours" in response.json()["error"]["fields"]
    assert not Tenant.objects.filter(slug="initech").exists()


def test_duplicate_tenant_slug_is_a_clear_400(api, platform_admin, tenant):
    response = api.as_user(platform_admin).post("/api/tenants/", {"name": "Other", "slug": "acme"}, format="json")
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["fields"]["slug"] == ["tenant with this slug already exists."]
    assert body["message"] == "Invalid input. slug: tenant with this slug already exists."


def test_quota_profile_limits_are_replaced_as_a_whole_and_audited(api, platform_admin, tenant):
    make_profile("A40-8Q")
    make_profile("A40-4Q")
    client = api.as_user(platform_admin)
    url = f"/api/quotas/{tenant.quota.pk}/"
    response = client.patch(url, {"profile_limits": [{"profile": "A40-8Q", "max_instances": 2}]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["profile_limits"] == [{"profile": "A40-8Q", "max_instances": 2}]
    response = client.patch(url, {"profile_limits": [{"profile": "A40-4Q", "max_instances": 5}]}, format="json")
    assert [(p.profile.name, p.max_instances) for p in ProfileQuota.objects.all()] == [("A40-4Q", 5)]
    events = AuditEvent.objects.filter(verb="quota.profile_limits_updated").order_by("id")
    assert [e.after for e in events] == [
        {"profile_limits": {"A40-8Q": 2}},
        {"profile_limits": {"A40-4Q": 5}},
    ]
    assert events.last().before == {"profile_limits": {"A40-8Q": 2}}


def test_quota_profile_limits_reject_unknown_and_repeated_profiles(api, platform_admin, tenant):
    make_profile("A40-8Q")
    client = api.as_user(platform_admin)
    url = f"/api/quotas/{tenant.quota.pk}/"
    unknown = client.patch(url, {"profile_limits": [{"profile": "Z9-1Q", "max_instances": 1}]}, format="json")
    assert unknown.status_code == 400
    assert "Z9-1Q" in unknown.json()["error"]["message"]
    repeated = client.patch(
        url,
        {"profile_limits": [{"profile": "A40-8Q", "max_instances": 1}, {"profile": "A40-8Q", "max_instances": 2}]},
        format="json",
    )
    assert repeated.status_code == 400
    assert "repeated: A40-8Q" in repeated.json()["error"]["message"]
    assert not ProfileQuota.objects.exists()


def test_quotas_cannot_be_created_or_deleted_directly(api, platform_admin, tenant):
    client = api.as_user(platform_admin)
    assert client.post("/api/quotas/", {"tenant": tenant.pk}, format="json").status_code == 405
    assert client.delete(f"/api/quotas/{tenant.quota.pk}/").status_code == 405


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"user": "alice", "role": Role.TENANT_MEMBER}, "tenant"),
        ({"user": "alice", "role": Role.AUDITOR, "tenant": "TENANT"}, "tenant"),
        ({"user": "ghost", "role": Role.AUDITOR}, "user"),
        ({"user": "alice", "role": "owner"}, "role"),
    ],
)
def test_membership_role_and_tenant_must_agree(api, platform_admin, tenant_member, tenant, payload, field):
    payload = {k: (tenant.pk if v == "TENANT" else v) for k, v in payload.items()}
    response = api.as_user(platform_admin).post("/api/memberships/", payload, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]


def test_same_role_twice_is_refused(api, platform_admin, tenant_member, tenant):
    response = api.as_user(platform_admin).post(
        "/api/memberships/", {"user": "alice", "role": Role.TENANT_MEMBER, "tenant": tenant.pk}, format="json"
    )
    assert response.status_code == 400
    assert "already exists" in response.json()["error"]["message"]


def test_database_refuses_a_platform_role_with_a_tenant(tenant_member, tenant):
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(user=tenant_member, role=Role.AUDITOR, tenant=tenant)


def test_template_rules(api, platform_admin, tenant):
    make_profile("A40-8Q")
    client = api.as_user(platform_admin)
    base = {"vcpus": 4, "memory_mib": 8192, "disk_image": "d.qcow2", "allowed_tenants": [tenant.pk]}
    several = client.post("/api/templates/", {**base, "name": "x", "profile": "A40-8Q", "gpu_count": 2}, format="json")
    assert several.status_code == 400
    assert "use whole GPUs for several" in several.json()["error"]["message"]
    passthrough = client.post(
        "/api/templates/",
        {**base, "name": "Whole", "profile": None, "gpu_count": 2, "gpu_models": ["A40"]},
        format="json",
    )
    assert passthrough.status_code == 201, passthrough.content
    assert passthrough.json()["is_passthrough"] is True and passthrough.json()["framebuffer_mib"] is None
    tiny = client.post("/api/templates/", {**base, "name": "Tiny", "profile": "A40-8Q", "vcpus": 0}, format="json")
    assert tiny.status_code == 400 and "vcpus" in tiny.json()["error"]["fields"]


def test_share_and_no_gpu_templates(api, platform_admin, tenant):
    make_profile("A40-8Q")
    client = api.as_user(platform_admin)
    base = {"vcpus": 4, "memory_mib": 8192, "disk_image": "d.qcow2", "allowed_tenants": [tenant.pk]}
    share = client.post(
        "/api/templates/",
        {**base, "name": "Quarter", "gpu_share_milli": 250, "gpu_models": ["A40", "L40S"], "profile_series": "B"},
        format="json",
    )
    assert share.status_code == 201, share.content
    body = share.json()
    assert body["kind"] == "vgpu-share" and body["gpu_models"] == ["A40", "L40S"] and body["profile_series"] == "B"
    assert body["gpu_summary"] == "vGPU ≥ 25% of a board (B-series, A40 or L40S)"
    none = client.post("/api/templates/", {**base, "name": "Office", "gpu_count": 0}, format="json")
    assert none.status_code == 201 and none.json()["kind"] == "none" and none.json()["gpu_summary"] == "No GPU"
    refused = {
        "both": {"profile": "A40-8Q", "gpu_share_milli": 250},
        "several": {"gpu_share_milli": 250, "gpu_count": 2},
        "models with a profile": {"profile": "A40-8Q", "gpu_models": ["A40"]},
        "a whole board as a share": {"gpu_share_milli": 1000},
        "models without a GPU": {"gpu_count": 0, "gpu_models": ["A40"]},
        "not a list": {"gpu_share_milli": 250, "gpu_models": "A40"},
    }
    for label, fields in refused.items():
        response = client.post("/api/templates/", {**base, "name": label, **fields}, format="json")
        assert response.status_code == 400, (label, response.content)
        assert response.json()["error"]["message"], label
    assert DesktopTemplate.objects.count() == 2


def test_deleting_a_profile_in_use_is_a_409_naming_the_user(api, platform_admin, tenant):
    profile = make_profile("A40-8Q")
    make_template("CAD", profile=profile, tenants=[tenant])
    response = api.as_user(platform_admin).delete(f"/api/vgpu-profiles/{profile.pk}/")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "conflict"
    assert "A40-8Q is still in use" in error["message"] and "CAD" in error["message"]
    assert not AuditEvent.objects.filter(verb="vgpuprofile.deleted").exists()


def test_inactive_templates_are_hidden_from_end_users(api, tenant_member, tenant):
    profile = make_profile("A40-8Q")
    make_template("Active", profile=profile, tenants=[tenant])
    make_template("Retired", profile=profile, tenants=[tenant], is_active=False)
    names = [row["name"] for row in api.as_user(tenant_member).get("/api/templates/").json()["results"]]
    assert names == ["Active"]


# --- every number bounded, as the database and common sense hold (issue 14; core/limits.py) ---


@pytest.mark.parametrize(
    "body, field",
    [
        ({"max_desktops": 10_001}, "max_desktops"),
        ({"max_framebuffer_mib": 2**63 - 1}, "max_framebuffer_mib"),
        ({"max_desktop_hours": 24 * 90 + 1}, "max_desktop_hours"),
    ],
)
def test_quota_limits_beyond_the_bounds_are_refused(api, platform_admin, tenant, body, field):
    """Reproduction: PATCH /api/quotas/<id>/ {"max_framebuffer_mib": 2**63-1} (or 10,001 desktops) was stored."""
    response = api.as_user(platform_admin).patch(f"/api/quotas/{tenant.quota.pk}/", body, format="json")
    assert response.status_code == 400 and field in response.json()["error"]["fields"], response.content
    tenant.quota.refresh_from_db()
    assert (tenant.quota.max_desktops, tenant.quota.max_framebuffer_mib) == (2, 16384)


def test_profile_limits_and_new_tenants_quotas_are_bounded_too(api, platform_admin, tenant):
    make_profile("A40-8Q")
    client = api.as_user(platform_admin)
    limits = client.patch(
        f"/api/quotas/{tenant.quota.pk}/",
        {"profile_limits": [{"profile": "A40-8Q", "max_instances": 10_001}]},
        format="json",
    )
    assert limits.status_code == 400
    created = client.post(
        "/api/tenants/", {"name": "Big", "slug": "big", "quota": {"max_framebuffer_mib": 2**62}}, format="json"
    )
    assert created.status_code == 400 and not Tenant.objects.filter(slug="big").exists()


@pytest.mark.parametrize("field, value", [("vcpus", 257), ("memory_mib", 64 * 1024 * 1024 + 1)])
def test_template_vcpus_and_memory_are_bounded(api, platform_admin, tenant, field, value):
    """Reproduction: a template of 2**40 MiB of RAM was accepted."""
    base = {"name": "Huge", "vcpus": 4, "memory_mib": 8192, "disk_image": "d.qcow2", "gpu_count": 0}
    response = api.as_user(platform_admin).post("/api/templates/", {**base, field: value}, format="json")
    assert response.status_code == 400 and field in response.json()["error"]["fields"], response.content


def test_host_gpu_and_profile_numbers_are_bounded(api, platform_admin):
    from inventory.tests.factories import make_gpu, make_host

    host = make_host()
    gpu = make_gpu(host)
    profile = make_profile("A40-8Q")
    client = api.as_user(platform_admin)
    for url, body in [
        (f"/api/hosts/{host.pk}/", {"memory_mib": 2**62}),
        (f"/api/hosts/{host.pk}/", {"cpu_cores": 2**31 - 1}),
        (f"/api/gpus/{gpu.pk}/", {"framebuffer_mib": 2**31 - 1}),
        (f"/api/vgpu-profiles/{profile.pk}/", {"max_per_gpu": 30_000}),
    ]:
        response = client.patch(url, body, format="json")
        assert response.status_code == 400, (url, body, response.content)


@pytest.mark.parametrize(
    "body",
    [{"template": 2**64, "duration_hours": 1}, {"template": 1, "duration_hours": 1, "tenant": 2**64}],
)
def test_desktop_requests_with_ids_beyond_64_bits_are_refused_not_a_500(api, tenant_member, body):
    response = api.as_user(tenant_member).post("/api/desktops/", body, format="json")
    assert response.status_code == 400, response.content


def test_a_template_filter_by_a_tenant_id_beyond_64_bits_is_a_400_not_a_500(api, platform_admin):
    """Reproduction: GET /api/templates/?tenant=99999999999999999999 was a 500 (OverflowError)."""
    response = api.as_user(platform_admin).get("/api/templates/", {"tenant": "99999999999999999999"})
    assert response.status_code == 400
