"""Audit events name the request they came from: source IP and request id."""

import pytest

from audit.models import AuditEvent
from tenancy.roles import Role

pytestmark = pytest.mark.django_db


def test_api_write_records_actor_tenant_ip_and_request_id(api, platform_admin, tenant):
    client = api.as_user(platform_admin)
    response = client.patch(
        f"/api/quotas/{tenant.quota.pk}/",
        {"max_desktops": 7},
        format="json",
        HTTP_X_REQUEST_ID="req-42",
        REMOTE_ADDR="10.1.2.3",
    )
    assert response.status_code == 200
    assert response["X-Request-ID"] == "req-42"
    event = AuditEvent.objects.get(verb="quota.updated")
    assert (event.actor_id, event.actor_username) == (platform_admin.pk, "padmin")
    assert (event.tenant_id, event.tenant_name) == (tenant.pk, "Acme Research")
    assert (event.source_ip, event.request_id) == ("10.1.2.3", "req-42")
    assert event.before == {"max_desktops": 2} and event.after == {"max_desktops": 7}
    assert event.object_type == "allocations.quota" and event.object_id == str(tenant.quota.pk)


def test_malformed_request_id_is_replaced(api, platform_admin):
    response = api.as_user(platform_admin).post(
        "/api/hosts/", {"name": "gpu-9", "libvirt_uri": "qemu:///system"}, format="json", HTTP_X_REQUEST_ID="bad id!"
    )
    assert response.status_code == 201
    event = AuditEvent.objects.get(verb="host.created")
    assert event.request_id == response["X-Request-ID"] != "bad id!"
    assert len(event.request_id) == 32


def test_update_without_change_records_nothing(api, platform_admin, tenant):
    client = api.as_user(platform_admin)
    client.patch(f"/api/quotas/{tenant.quota.pk}/", {"max_desktops": tenant.quota.max_desktops}, format="json")
    assert not AuditEvent.objects.filter(verb="quota.updated").exists()


def test_audit_filters(api, auditor, platform_admin, tenant, other_tenant):
    client = api.as_user(platform_admin)
    client.patch(f"/api/tenants/{tenant.pk}/", {"description": "one"}, format="json")
    client.patch(f"/api/tenants/{other_tenant.pk}/", {"description": "two"}, format="json")
    client.post("/api/memberships/", {"user": "auditor", "role": Role.AUDITOR}, format="json")  # 400: exists
    reader = api.as_user(auditor)
    rows = reader.get("/api/audit-events/", {"tenant_id": tenant.pk}).json()["results"]
    assert [r["verb"] for r in rows] == ["tenant.updated"]
    assert rows[0]["after"] == {"description": "one"}
    assert reader.get("/api/audit-events/", {"verb_prefix": "tenant."}).json()["count"] == 2
    assert reader.get("/api/audit-events/", {"actor": "padmin"}).json()["count"] == 2
    assert reader.get("/api/audit-events/", {"until": "2000-01-01T00:00:00Z"}).json()["count"] == 0
    bad = reader.get("/api/audit-events/", {"since": "yesterday"})
    assert bad.status_code == 400 and "since" in bad.json()["error"]["fields"]
