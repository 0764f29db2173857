"""Quota-increase requests through the API: asked by members, decided once by platform admins."""

import pytest

from allocations.models import QuotaRequest
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def ask(api, user, **body):
    return api.as_user(user).post("/api/quota-requests/", body, format="json")


def test_member_asks_admin_approves_and_the_quota_rises(api, tenant, tenant_member, platform_admin):
    created = ask(api, tenant_member, max_desktops=6, max_desktop_hours=12, reason="a 3-day workshop")
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["status"], body["tenant"], body["requested_by"]) == ("pending", tenant.pk, "alice")
    approved = api.as_user(platform_admin).post(
        f"/api/quota-requests/{body['id']}/approve/", {"reason": "ok"}, format="json"
    )
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    tenant.quota.refresh_from_db()
    assert (tenant.quota.max_desktops, tenant.quota.max_desktop_hours) == (6, 12)
    event = AuditEvent.objects.get(verb="quota_request.approved")
    assert event.before["quota"]["max_desktops"] == 2 and event.after["quota"]["max_desktops"] == 6
    assert event.tenant_id == tenant.pk
    # both sides see the decision
    mine = api.as_user(tenant_member).get(f"/api/quota-requests/{body['id']}/").json()
    assert (mine["status"], mine["decided_by"], mine["decision_reason"]) == ("approved", "padmin", "ok")


def test_rejection_needs_a_reason_and_changes_nothing(api, tenant, tenant_member, platform_admin):
    request_id = ask(api, tenant_member, max_desktops=9, reason="more").json()["id"]
    admin = api.as_user(platform_admin)
    missing = admin.post(f"/api/quota-requests/{request_id}/reject/", {}, format="json")
    assert missing.status_code == 400 and "reason" in missing.json()["error"]["message"]
    rejected = admin.post(f"/api/quota-requests/{request_id}/reject/", {"reason": "budget"}, format="json")
    assert rejected.json()["status"] == "rejected"
    tenant.quota.refresh_from_db()
    assert tenant.quota.max_desktops == 2


def test_a_request_is_decided_once(api, tenant_member, platform_admin):
    request_id = ask(api, tenant_member, max_desktops=9, reason="more").json()["id"]
    admin = api.as_user(platform_admin)
    assert admin.post(f"/api/quota-requests/{request_id}/approve/", {}, format="json").status_code == 200
    again = admin.post(f"/api/quota-requests/{request_id}/reject/", {"reason": "no"}, format="json")
    assert again.status_code == 409 and "already approved" in again.json()["error"]["message"]


def test_members_cannot_decide_and_outsiders_cannot_see(api, tenant_member, outsider, auditor):
    request_id = ask(api, tenant_member, max_desktops=9, reason="more").json()["id"]
    denied = api.as_user(tenant_member).post(f"/api/quota-requests/{request_id}/approve/", {}, format="json")
    assert denied.status_code == 403
    assert api.as_user(outsider).get(f"/api/quota-requests/{request_id}/").status_code == 404
    assert api.as_user(auditor).post(f"/api/quota-requests/{request_id}/approve/", {}, format="json").status_code == 403
    assert QuotaRequest.objects.get().status == "pending"


def test_asking_for_less_or_nothing_is_refused(api, tenant_member):
    lower = ask(api, tenant_member, max_desktops=1, reason="x")
    assert lower.status_code == 400 and "max_desktops is already 2" in lower.json()["error"]["message"]
    nothing = ask(api, tenant_member, reason="x")
    assert nothing.status_code == 400
    no_reason = ask(api, tenant_member, max_desktops=5, reason="  ")
    assert no_reason.status_code == 400
    assert not QuotaRequest.objects.exists()


def test_only_the_requester_cancels(api, tenant, tenant_member):
    from allocations.tests.factories import make_membership, make_user
    from tenancy.roles import Role

    colleague = make_user("carol")
    make_membership(colleague, Role.TENANT_MEMBER, tenant)
    request_id = ask(api, tenant_member, max_desktops=9, reason="more").json()["id"]
    assert api.as_user(colleague).post(f"/api/quota-requests/{request_id}/cancel/").status_code == 403
    assert api.as_user(tenant_member).post(f"/api/quota-requests/{request_id}/cancel/").json()["status"] == "cancelled"


@pytest.mark.parametrize("decide", ["approve", "reject"])
def test_the_decision_service_itself_refuses_anyone_but_a_platform_admin(tenant, tenant_member, auditor, decide):
    """The rule lives in the service, so the API, the pages and the admin cannot disagree: called
    directly, as the pages and any future caller do, it refuses a member and an auditor."""
    from allocations.services import quotas
    from core.errors import Forbidden

    pending = quotas.request_quota_increase(actor=tenant_member, tenant=tenant, changes={"max_desktops": 9}, reason="x")
    service = getattr(quotas, f"{decide}_quota_request")
    for who in (tenant_member, auditor):
        with pytest.raises(Forbidden, match="Only a platform admin may decide quota requests"):
            service(pending.pk, actor=who, reason="why not")
    pending.refresh_from_db()
    assert pending.status == "pending" and not AuditEvent.objects.filter(verb__startswith="quota_request.a").exists()


def test_the_cancel_service_itself_refuses_anyone_but_the_requester(tenant, tenant_member, platform_admin):
    from allocations.services import quotas
    from core.errors import Forbidden

    pending = quotas.request_quota_increase(actor=tenant_member, tenant=tenant, changes={"max_desktops": 9}, reason="x")
    with pytest.raises(Forbidden, match="Only the member who asked"):
        quotas.cancel_quota_request(pending.pk, actor=platform_admin)
    assert quotas.cancel_quota_request(pending.pk, actor=tenant_member).status == "cancelled"
