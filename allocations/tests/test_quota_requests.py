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


# --- input that must not break anything (issue 14) ---


@pytest.mark.parametrize(
    "field, value",
    [("max_framebuffer_mib", 2**63 - 1), ("max_framebuffer_mib", 1024**3 + 1), ("max_desktops", 10_001)],
)
def test_api_refuses_a_quota_request_beyond_what_the_portal_allows(api, tenant_member, field, value):
    """Reproduction: POST /api/quota-requests/ {"max_framebuffer_mib": 2**63-1} was stored (201)."""
    refused = ask(api, tenant_member, reason="a lot", **{field: value})
    assert refused.status_code == 400, refused.content
    assert f"{field}: Ensure this value is less than or equal to" in refused.json()["error"]["message"]
    assert not QuotaRequest.objects.exists()


def test_the_request_service_itself_refuses_numbers_beyond_the_ceilings(tenant, tenant_member):
    from allocations.services import quotas
    from core.errors import PortalError

    with pytest.raises(PortalError, match="max_framebuffer_mib may be at most 1073741824 MiB"):
        quotas.request_quota_increase(
            actor=tenant_member, tenant=tenant, changes={"max_framebuffer_mib": 2**63}, reason="x"
        )
    assert not QuotaRequest.objects.exists()


def test_approving_a_request_for_2_63_mib_is_refused_by_the_service(api, tenant, tenant_member, platform_admin):
    """Reproduction: a request stored around the form (2**63-1 MiB, the most the column holds; 2**63 itself
    does not fit in it) was approved and the tenant's quota became 9223372036854775807 MiB."""
    from allocations.services import quotas
    from core.errors import PortalError

    stored = QuotaRequest.objects.create(
        tenant=tenant, requested_by=tenant_member, max_framebuffer_mib=2**63 - 1, reason="all of it"
    )
    with pytest.raises(PortalError, match="more than the portal allows"):
        quotas.approve_quota_request(stored.pk, actor=platform_admin)
    through_api = api.as_user(platform_admin).post(f"/api/quota-requests/{stored.pk}/approve/", {}, format="json")
    assert through_api.status_code == 400 and "at most" in through_api.json()["error"]["message"]
    stored.refresh_from_db()
    tenant.quota.refresh_from_db()
    assert stored.status == "pending" and tenant.quota.max_framebuffer_mib == 16384
    assert not AuditEvent.objects.filter(verb="quota_request.approved").exists()


def test_a_2001_character_reason_is_refused_by_the_service_for_api_and_pages_alike(
    api, tenant, tenant_member, platform_admin
):
    """Reproduction: the API accepted a 2,001-character reason that the page's form refused; and a
    decision note of any length was stored. The service is the one rule now."""
    from allocations.services import quotas
    from core.errors import PortalError

    too_long = "x" * 2001
    assert ask(api, tenant_member, max_desktops=6, reason=too_long).status_code == 400
    with pytest.raises(PortalError, match="2001 characters long; keep it to 2000"):
        quotas.request_quota_increase(actor=tenant_member, tenant=tenant, changes={"max_desktops": 6}, reason=too_long)
    assert not QuotaRequest.objects.exists()
    pending = quotas.request_quota_increase(
        actor=tenant_member, tenant=tenant, changes={"max_desktops": 6}, reason="y" * 2000
    )
    for decide in (quotas.approve_quota_request, quotas.reject_quota_request):
        with pytest.raises(PortalError, match="The decision note is 2001 characters long"):
            decide(pending.pk, actor=platform_admin, reason=too_long)
    refused = api.as_user(platform_admin).post(
        f"/api/quota-requests/{pending.pk}/approve/", {"reason": too_long}, format="json"
    )
    assert refused.status_code == 400
    pending.refresh_from_db()
    assert pending.status == "pending"


def test_a_member_cannot_ask_for_another_tenants_quota_through_the_api(api, tenant_member, other_tenant):
    refused = ask(api, tenant_member, max_desktops=6, reason="theirs", tenant=other_tenant.pk)
    assert refused.status_code == 404 and "among yours" in refused.json()["error"]["message"]
    assert not QuotaRequest.objects.exists()


def test_a_second_pending_request_for_the_same_limit_is_a_409(api, tenant, tenant_member):
    """Reproduction: a member could pile up pending requests for max_desktops (each one 201)."""
    from allocations.tests.factories import make_membership, make_user
    from tenancy.roles import Role

    first = ask(api, tenant_member, max_desktops=6, reason="workshop")
    assert first.status_code == 201
    colleague = make_user("carol")
    make_membership(colleague, Role.TENANT_MEMBER, tenant)
    again = ask(api, colleague, max_desktops=8, max_desktop_hours=12, reason="me too")
    assert again.status_code == 409, again.content
    message = again.json()["error"]["message"]
    assert f"already has a pending request (#{first.json()['id']}, asked by alice) for max_desktops" in message
    # another limit is its own question; once the first is decided (here: withdrawn) one may ask again
    assert ask(api, colleague, max_framebuffer_mib=65536, reason="bigger boards").status_code == 201
    api.as_user(tenant_member).post(f"/api/quota-requests/{first.json()['id']}/cancel/")
    assert ask(api, colleague, max_desktops=8, reason="me too").status_code == 201
    assert QuotaRequest.objects.filter(status="pending").count() == 2


def test_the_pending_check_runs_under_the_tenants_quota_lock(tenant, tenant_member, monkeypatch):
    """Two requests at once must not both see "none pending": the check and the insert happen while the
    tenant's quota row is locked (select_for_update), as the desktop requests lock it."""
    from allocations.models import Quota
    from allocations.services import quotas

    locked = []
    real = Quota.objects.select_for_update

    def spy(*args, **kwargs):
        locked.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(Quota.objects, "select_for_update", spy)
    quotas.request_quota_increase(actor=tenant_member, tenant=tenant, changes={"max_desktops": 6}, reason="x")
    assert locked
