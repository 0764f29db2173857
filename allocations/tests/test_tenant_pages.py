"""The platform admins' tenant, people and quota pages and their API (issue 16): who may open them,
what they change (through the services, audited once), and how bad input is refused in words."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.utils import timezone

from allocations.choices import DesktopStatus
from allocations.models import Desktop, ProfileQuota, Quota, QuotaRequest
from allocations.services import people, tenants
from allocations.services.quotas import desktop_hours_this_month, quota_lines, request_quota_increase
from allocations.tests.factories import make_membership, make_template, make_user
from audit.models import AuditEvent
from core.errors import Conflict, Forbidden, PortalError
from core.limits import MAX_DESKTOPS
from inventory.models import VGPUProfile
from tenancy.models import Membership, Tenant
from tenancy.roles import Role

pytestmark = pytest.mark.django_db
User = get_user_model()


def _held_desktop(tenant, owner, *, profile=None, started_hours_ago=2, status=DesktopStatus.RUNNING, **fields):
    """A desktop row holding capacity, with the quota's counters raised as the request service does."""
    template = make_template(f"T{Desktop.objects.count()}", profile=profile, tenants=[tenant])
    framebuffer = profile.framebuffer_mib if profile else 0
    desktop = Desktop.objects.create(
        name=fields.pop("name", "d"),
        tenant=tenant,
        owner=owner,
        template=template,
        profile=profile,
        vcpus=2,
        memory_mib=4096,
        framebuffer_mib=framebuffer,
        duration_hours=fields.pop("duration_hours", 4),
        status=status,
        started_at=timezone.now() - timedelta(hours=started_hours_ago),
        **fields,
    )
    quota = Quota.objects.get(tenant=tenant)
    Quota.objects.filter(pk=quota.pk).update(
        desktops_held=quota.desktops_held + 1, framebuffer_held_mib=quota.framebuffer_held_mib + framebuffer
    )
    return desktop


# --- Who may open what ---------------------------------------------------------------------------------

READ_PAGES = ["/tenants/", "/tenants/{tenant}/", "/people/", "/people/{member}/"]
ADMIN_PAGES = ["/tenants/new/", "/tenants/{tenant}/quota/"]
WRITES = [
    ("/tenants/new/", {"name": "Initech", "slug": "initech", "max_desktops": 2, "max_framebuffer_gib": 16}),
    ("/tenants/{tenant}/quota/", {"max_desktops": 9, "max_framebuffer_gib": 16, "max_desktop_hours": 8}),
    ("/tenants/{tenant}/active/", {"active": "0"}),
    ("/people/add/", {"user": "newcomer", "role": "tenant-member", "tenant": "{tenant}"}),
    ("/people/{member}/active/", {"active": "0"}),
    ("/memberships/{membership}/role/", {"role": "auditor"}),
    ("/memberships/{membership}/delete/", {}),
]


def _fill(text: str, ids: dict) -> str:
    return text.format(**ids) if isinstance(text, str) else text


@pytest.fixture
def ids(tenant, tenant_member):
    return {
        "tenant": tenant.pk,
        "member": tenant_member.pk,
        "membership": Membership.objects.get(user=tenant_member).pk,
    }


@pytest.mark.parametrize("persona", ["platform_admin", "auditor", "tenant_member", "outsider"])
def test_pages_role_matrix_operators_read_admins_write_members_are_refused(client, personas, ids, persona):
    client.force_login(personas[persona])
    for url in READ_PAGES:
        expected = 200 if persona in ("platform_admin", "auditor") else 403
        assert client.get(url.format(**ids)).status_code == expected, url
    for url in ADMIN_PAGES:
        expected = 200 if persona == "platform_admin" else 403
        assert client.get(url.format(**ids)).status_code == expected, url
    events = AuditEvent.objects.count()
    if persona != "platform_admin":
        for url, data in WRITES:
            response = client.post(url.format(**ids), {k: _fill(v, ids) for k, v in data.items()})
            assert response.status_code == 403, url
        assert AuditEvent.objects.count() == events, "a refused write records nothing"
        assert Membership.objects.get(pk=ids["membership"]).role == Role.TENANT_MEMBER
        assert User.objects.get(pk=ids["member"]).is_active


def test_anonymous_visitors_are_sent_to_sign_in(client, ids):
    for url in READ_PAGES + ADMIN_PAGES:
        response = client.get(url.format(**ids))
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_unknown_tenant_person_or_membership_is_not_found(client, platform_admin):
    client.force_login(platform_admin)
    assert client.get("/tenants/999999/").status_code == 404
    assert client.get("/people/999999/").status_code == 404
    assert client.post("/memberships/999999/role/", {"role": "auditor"}).status_code == 404


def test_the_auditor_reads_the_tenant_page_without_any_form(client, auditor, tenant, tenant_member):
    client.force_login(auditor)
    page = client.get(f"/tenants/{tenant.pk}/").content.decode()
    assert "alice" in page and "Desktops at once" in page
    assert "Add member" not in page and "Edit quota" not in page and "Remove" not in page


# --- Tenants ---------------------------------------------------------------------------------------------


def test_admin_creates_a_tenant_with_its_quota_in_gib(client, platform_admin):
    client.force_login(platform_admin)
    response = client.post(
        "/tenants/new/",
        {
            "name": "Initech",
            "slug": "initech",
            "max_desktops": 3,
            "max_framebuffer_gib": "24.5",
            "max_desktop_hours": 6,
        },
    )
    tenant = Tenant.objects.get(slug="initech")
    assert response.status_code == 302 and response["Location"] == f"/tenants/{tenant.pk}/"
    assert (tenant.quota.max_desktops, tenant.quota.max_framebuffer_mib, tenant.quota.max_desktop_hours) == (
        3,
        24.5 * 1024,
        6,
    )
    verbs = set(AuditEvent.objects.filter(actor_id=platform_admin.pk).values_list("verb", flat=True))
    assert {"tenant.created", "quota.created"} <= verbs


def test_a_taken_slug_is_refused_in_words_and_the_input_kept(client, platform_admin, tenant):
    client.force_login(platform_admin)
    page = client.post(
        "/tenants/new/",
        {"name": "Acme 2", "slug": "acme", "max_desktops": 3, "max_framebuffer_gib": "8", "max_desktop_hours": 6},
    ).content.decode()
    assert "slug" in page and "already exists" in page and 'value="Acme 2"' in page
    assert Tenant.objects.count() == 1


def test_the_tenant_page_shows_members_quota_usage_and_hours_this_month(
    client, platform_admin, tenant, tenant_member, catalog
):
    _held_desktop(tenant, tenant_member, profile=VGPUProfile.objects.get(name="A40-8Q"), started_hours_ago=3)
    client.force_login(platform_admin)
    page = client.get(f"/tenants/{tenant.pk}/").content.decode()
    assert "alice" in page and "Tenant member" in page
    assert "1 of 2" in page  # desktops at once
    assert "8.0 GiB of 16.0 GiB" in page  # framebuffer, GiB with one decimal
    assert "Desktop-hours this month: 3.0 h" in page or timezone.localtime().day == 1


# --- People and roles ---------------------------------------------------------------------------------


def test_add_member_by_email_finds_the_existing_account(client, platform_admin, tenant):
    bob = make_user("bob", email="Bob@Example.org")
    client.force_login(platform_admin)
    response = client.post(
        "/people/add/", {"user": "bob@example.org", "role": "tenant-member", "tenant": tenant.pk, "back": "tenant"}
    )
    assert response.status_code == 302 and response["Location"] == f"/tenants/{tenant.pk}/"
    membership = Membership.objects.get(user=bob)
    assert membership.tenant == tenant and membership.role == Role.TENANT_MEMBER
    event = AuditEvent.objects.get(verb="membership.created", object_id=str(membership.pk))
    assert event.actor_id == platform_admin.pk and event.tenant_id == tenant.pk
    assert User.objects.count() == 2  # nobody new


def test_add_member_by_an_unknown_email_makes_an_account_without_a_password_and_says_so(client, platform_admin, tenant):
    client.force_login(platform_admin)
    page = client.post(
        "/people/add/",
        {"user": "carol@example.org", "role": "tenant-member", "tenant": tenant.pk, "back": "tenant"},
        follow=True,
    ).content.decode()
    carol = User.objects.get(email="carol@example.org")
    assert carol.username == "carol" and not carol.has_usable_password() and carol.is_active
    assert "manage.py changepassword carol" in page
    assert Membership.objects.filter(user=carol, tenant=tenant).exists()
    assert AuditEvent.objects.filter(verb="user.created", object_id=str(carol.pk)).count() == 1


def test_adding_someone_twice_or_to_no_tenant_is_refused_in_words(client, platform_admin, tenant, tenant_member):
    client.force_login(platform_admin)
    page = client.post(
        "/people/add/", {"user": "alice", "role": "tenant-member", "tenant": tenant.pk, "back": "tenant"}, follow=True
    ).content.decode()
    assert "alice is already tenant member of Acme Research: that membership already exists." in page
    page = client.post("/people/add/", {"user": "alice", "role": "tenant-member"}, follow=True).content.decode()
    assert "A tenant member must belong to a tenant" in page
    assert Membership.objects.filter(user=tenant_member).count() == 1


def test_one_address_shared_by_two_accounts_asks_for_the_username(platform_admin, tenant):
    make_user("d1", email="team@example.org")
    make_user("d2", email="TEAM@example.org")
    with pytest.raises(Conflict, match="name the person by username"):
        people.add_member("team@example.org", tenant=tenant, actor=platform_admin)


def test_a_role_change_is_audited_once_with_before_and_after(client, platform_admin, tenant_member):
    membership = Membership.objects.get(user=tenant_member)
    client.force_login(platform_admin)
    response = client.post(f"/memberships/{membership.pk}/role/", {"role": "auditor"})
    assert response.status_code == 302 and response["Location"] == f"/people/{tenant_member.pk}/"
    membership.refresh_from_db()
    assert membership.role == Role.AUDITOR and membership.tenant is None
    events = AuditEvent.objects.filter(
        object_type="allocations.membership", object_id=str(membership.pk), actor_id=platform_admin.pk
    )
    assert [e.verb for e in events] == ["membership.updated"]
    assert events[0].before["role"] == "tenant-member" and events[0].after["role"] == "auditor"
    assert events[0].actor_id == platform_admin.pk


def test_removing_a_membership_from_the_tenant_page(client, platform_admin, tenant, tenant_member):
    membership = Membership.objects.get(user=tenant_member)
    client.force_login(platform_admin)
    response = client.post(f"/memberships/{membership.pk}/delete/", {"back": "tenant"})
    assert response["Location"] == f"/tenants/{tenant.pk}/"
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert AuditEvent.objects.filter(verb="membership.deleted", actor_id=platform_admin.pk).count() == 1


def test_deactivating_ends_the_persons_sessions_and_is_audited_once(client, platform_admin, tenant_member, auditor):
    member_browser, member_laptop, auditor_browser = type(client)(), type(client)(), type(client)()
    member_browser.force_login(tenant_member)
    member_laptop.force_login(tenant_member)  # a second session (another browser) of the same person
    auditor_browser.force_login(auditor)
    assert member_browser.get("/").status_code == 200
    sessions_before = Session.objects.count()
    client.force_login(platform_admin)
    page = client.post(f"/people/{tenant_member.pk}/active/", {"active": "0"}, follow=True).content.decode()
    assert "is deactivated" in page
    tenant_member.refresh_from_db()
    assert not tenant_member.is_active
    assert Session.objects.count() == sessions_before + 1 - 2  # the admin's new one; the member's two ended
    assert member_browser.get("/").status_code == 302 and member_laptop.get("/").status_code == 302  # signed out
    assert auditor_browser.get("/tenants/").status_code == 200
    events = AuditEvent.objects.filter(object_type="auth.user", object_id=str(tenant_member.pk)).exclude(
        verb__startswith="auth."  # the sign-ins above
    )
    assert [(e.verb, e.before, e.after) for e in events] == [
        ("user.updated", {"is_active": True}, {"is_active": False})
    ]
    assert events[0].actor_id == platform_admin.pk
    client.post(f"/people/{tenant_member.pk}/active/", {"active": "1"})
    tenant_member.refresh_from_db()
    assert tenant_member.is_active


def test_deactivating_tells_the_persons_open_sockets(platform_admin, tenant_member, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        people.set_user_active(tenant_member, False, actor=platform_admin)
    assert callbacks, "allocations.signals publishes access.changed after commit"


def test_nobody_deactivates_themselves_nor_the_last_platform_admin(platform_admin, tenant_member):
    with pytest.raises(Forbidden, match="your own account"):
        people.set_user_active(platform_admin, False, actor=platform_admin)
    with pytest.raises(Conflict, match="last active platform admin"):
        people.set_user_active(platform_admin, False, actor=tenant_member)
    second = make_user("second-admin")
    make_membership(second, Role.PLATFORM_ADMIN)
    people.set_user_active(platform_admin, False, actor=second)
    platform_admin.refresh_from_db()
    assert not platform_admin.is_active


def test_the_person_page_shows_roles_desktops_quota_requests_and_audit_trail(
    client, auditor, platform_admin, tenant, tenant_member
):
    _held_desktop(tenant, tenant_member, name="Alices CAD box")
    request_quota_increase(actor=tenant_member, tenant=tenant, changes={"max_desktops": 5}, reason="a course")
    client.force_login(auditor)
    page = client.get(f"/people/{tenant_member.pk}/").content.decode()
    assert "Tenant member" in page and "Acme Research" in page
    assert "Alices CAD box" in page
    assert "5 desktops" in page and "Pending" in page
    assert "quotarequest.created" in page  # their own action, in the trail
    assert "Deactivate" not in page  # auditors read only


# --- Quotas ------------------------------------------------------------------------------------------------


def test_the_quota_page_shows_usage_beside_each_limit(client, platform_admin, tenant, tenant_member, catalog):
    profile = VGPUProfile.objects.get(name="A40-8Q")
    ProfileQuota.objects.create(quota=tenant.quota, profile=profile, max_instances=3)
    _held_desktop(tenant, tenant_member, profile=profile, duration_hours=6)
    client.force_login(platform_admin)
    page = client.get(f"/tenants/{tenant.pk}/quota/").content.decode()
    assert '<td data-usage="max_desktops">1 of 2</td>' in page
    assert "8.0 GiB of 16.0 GiB" in page
    assert "longest held now: 6 h" in page
    assert "Desktops of A40-8Q" in page and "1 of 3" in page


def test_saving_the_quota_changes_limits_and_profile_caps_audited(client, platform_admin, tenant, catalog):
    a40_8q, a16 = VGPUProfile.objects.get(name="A40-8Q"), VGPUProfile.objects.get(name="A16-2B")
    ProfileQuota.objects.create(quota=tenant.quota, profile=a40_8q, max_instances=3)
    client.force_login(platform_admin)
    response = client.post(
        f"/tenants/{tenant.pk}/quota/",
        {
            "max_desktops": 6,
            "max_framebuffer_gib": "32",
            "max_desktop_hours": 12,
            f"limit_{a40_8q.pk}": "",  # removed
            "new_profile": a16.pk,
            "new_limit": 4,
        },
    )
    assert response.status_code == 302
    quota = Quota.objects.get(tenant=tenant)
    assert (quota.max_desktops, quota.max_framebuffer_mib, quota.max_desktop_hours) == (6, 32768, 12)
    assert {pq.profile.name: pq.max_instances for pq in quota.profile_limits.all()} == {"A16-2B": 4}
    verbs = sorted(
        AuditEvent.objects.filter(actor_id=platform_admin.pk, verb__startswith="quota.").values_list("verb", flat=True)
    )
    assert verbs == ["quota.profile_limits_updated", "quota.updated"]


def test_lowering_a_limit_below_use_is_allowed_and_said(client, platform_admin, tenant, tenant_member):
    _held_desktop(tenant, tenant_member)
    _held_desktop(tenant, tenant_member)
    client.force_login(platform_admin)
    page = client.post(
        f"/tenants/{tenant.pk}/quota/",
        {"max_desktops": 1, "max_framebuffer_gib": "16", "max_desktop_hours": 8},
        follow=True,
    ).content.decode()
    assert "uses more desktops at once than its new limit (2 of 1)" in page


@pytest.mark.parametrize(
    "field,value,words",
    [
        ("max_desktops", 2**63, "less than or equal to 10000"),
        ("max_framebuffer_gib", 2**63, "less than or equal to 1048576"),
        ("max_desktop_hours", 0, "greater than or equal to 1"),
        ("max_desktops", -1, "greater than or equal to 0"),
    ],
)
def test_an_out_of_bounds_quota_is_refused_in_words_on_the_page(client, platform_admin, tenant, field, value, words):
    client.force_login(platform_admin)
    data = {"max_desktops": 2, "max_framebuffer_gib": "16", "max_desktop_hours": 8, field: value}
    response = client.post(f"/tenants/{tenant.pk}/quota/", data)
    assert response.status_code == 200 and words in response.content.decode()
    quota = Quota.objects.get(tenant=tenant)
    assert (quota.max_desktops, quota.max_framebuffer_mib, quota.max_desktop_hours) == (2, 16384, 8)
    assert not AuditEvent.objects.filter(verb__startswith="quota.").exists()


def test_the_quota_service_refuses_2_63_mib_and_huge_profile_caps_in_words(platform_admin, tenant, catalog):
    """The service is the rule (the page's and the API's forms only mirror it): before, a profile cap went
    in through bulk_create, which skips the model's validators."""
    with pytest.raises(PortalError, match=r"max_framebuffer_mib may be at most 1073741824 MiB"):
        tenants.update_quota(tenant.quota, {"max_framebuffer_mib": 2**63}, actor=platform_admin)
    profile = VGPUProfile.objects.get(name="A40-8Q")
    with pytest.raises(PortalError, match=f"from 0 to {MAX_DESKTOPS} desktops; not so for: A40-8Q"):
        tenants.update_quota(
            tenant.quota, {"profile_limits": [{"profile": profile, "max_instances": 10**12}]}, actor=platform_admin
        )
    assert not tenant.quota.profile_limits.exists()


def test_the_api_refuses_an_out_of_bounds_quota_in_words(api, platform_admin, tenant):
    response = api.as_user(platform_admin).patch(
        f"/api/quotas/{tenant.quota.pk}/", {"max_framebuffer_mib": 2**63}, format="json"
    )
    assert response.status_code == 400
    assert "less than or equal to 1073741824" in response.json()["error"]["message"]


def test_one_pending_request_per_tenant_and_limit_is_kept(platform_admin, tenant, tenant_member, client):
    request_quota_increase(actor=tenant_member, tenant=tenant, changes={"max_desktops": 5}, reason="a course")
    with pytest.raises(Conflict, match="already has a pending request"):
        request_quota_increase(actor=tenant_member, tenant=tenant, changes={"max_desktops": 6}, reason="again")
    client.force_login(platform_admin)
    page = client.get(f"/tenants/{tenant.pk}/quota/").content.decode()
    assert f"#{QuotaRequest.objects.get().pk}</a> by alice" in page


def test_desktop_hours_this_month_clip_to_the_month(tenant, tenant_member):
    now = timezone.now()
    running = _held_desktop(tenant, tenant_member, started_hours_ago=2)
    Desktop.objects.filter(pk=running.pk).update(started_at=now - timedelta(hours=2))
    ended_long_ago = _held_desktop(tenant, tenant_member, status=DesktopStatus.RELEASED, holds_capacity=False)
    Desktop.objects.filter(pk=ended_long_ago.pk).update(
        started_at=now - timedelta(days=70), ended_at=now - timedelta(days=65)
    )
    start_of_month = timezone.localtime(now).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    expected = round(min(2 * 3600, (now - start_of_month).total_seconds()) / 3600, 1)
    assert desktop_hours_this_month(tenant, now=now) == expected


def test_quota_lines_name_each_limit(tenant, tenant_member, catalog):
    profile = VGPUProfile.objects.get(name="A40-8Q")
    ProfileQuota.objects.create(quota=tenant.quota, profile=profile, max_instances=1)
    _held_desktop(tenant, tenant_member, profile=profile)
    lines = {line.key: (line.used, line.allowed, line.percent) for line in quota_lines(tenant)}
    assert lines == {
        "max_desktops": (1, 2, 50),
        "max_framebuffer_mib": (8192, 16384, 50),
        "profile:A40-8Q": (1, 1, 100),
        "max_desktop_hours": (4, 8, 50),
    }


# --- API -------------------------------------------------------------------------------------------------


def test_api_adds_a_member_by_email_or_makes_the_account(api, platform_admin, tenant):
    make_user("bob", email="bob@example.org")
    client = api.as_user(platform_admin)
    response = client.post(
        "/api/memberships/", {"user": "bob@example.org", "tenant": tenant.pk, "role": "tenant-member"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["user"] == "bob" and "account_created" not in response.json()
    response = client.post(
        "/api/memberships/", {"user": "dan@example.org", "tenant": tenant.pk, "role": "tenant-member"}, format="json"
    )
    assert response.status_code == 201 and response.json()["account_created"] is True
    assert "manage.py changepassword dan" in response.json()["note"]
    again = client.post(
        "/api/memberships/", {"user": "dan", "tenant": tenant.pk, "role": "tenant-member"}, format="json"
    )
    assert again.status_code == 400 and "already tenant member of Acme Research" in again.json()["error"]["message"]
    typo = client.post(
        "/api/memberships/", {"user": "dna", "tenant": tenant.pk, "role": "tenant-member"}, format="json"
    )
    assert typo.status_code == 400 and "No account is called 'dna'" in typo.json()["error"]["fields"]["user"][0]
    assert not User.objects.filter(username="dna").exists()


def test_api_people_list_for_operators_and_deactivation_for_admins(api, personas, tenant_member):
    assert api.as_user(personas["tenant_member"]).get("/api/people/").status_code == 403
    listed = api.as_user(personas["auditor"]).get("/api/people/?q=ali").json()["results"]
    assert [p["username"] for p in listed] == ["alice"]
    assert listed[0]["memberships"][0]["tenant_name"] == "Acme Research"
    url = f"/api/people/{tenant_member.pk}/"
    assert api.as_user(personas["auditor"]).patch(url, {"is_active": False}, format="json").status_code == 403
    response = api.as_user(personas["platform_admin"]).patch(url, {"is_active": False}, format="json")
    assert response.status_code == 200 and response.json()["is_active"] is False
    yourself = api.as_user(personas["platform_admin"]).patch(
        f"/api/people/{personas['platform_admin'].pk}/", {"is_active": False}, format="json"
    )
    assert yourself.status_code == 403 and "your own account" in yourself.json()["error"]["message"]


def test_api_quota_usage_beside_each_limit(api, auditor, tenant, tenant_member):
    _held_desktop(tenant, tenant_member)
    body = api.as_user(auditor).get(f"/api/quotas/{tenant.quota.pk}/usage/").json()
    desktops = next(line for line in body["limits"] if line["key"] == "max_desktops")
    assert desktops == {
        "key": "max_desktops",
        "label": "Desktops at once",
        "used": 1.0,
        "allowed": 2,
        "unit": "",
        "percent": 50,
    }
    assert "desktop_hours_this_month" in body
