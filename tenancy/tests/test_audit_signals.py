"""Every change of who may do what is audited, however it is made (tenancy.audit_signals).

Issue 15: the Django admin could make someone superuser with no audit event."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission

from allocations.services.tenants import create_membership, delete_tenant
from allocations.tests.factories import make_membership, make_tenant, make_user
from audit.models import AuditEvent
from tenancy.models import Membership
from tenancy.roles import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, platform_admin):
    platform_admin.is_staff = platform_admin.is_superuser = True
    platform_admin.save()
    client.force_login(platform_admin)
    return client


def _change_form(user, **changes) -> dict:
    data = {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "groups": [],
        "user_permissions": [],
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_making_someone_superuser_in_the_admin_is_audited_with_actor_and_before_after(
    admin_client, platform_admin, tenant_member
):
    """Issue 15: the admin's change form ticked is_superuser and the trail said nothing."""
    response = admin_client.post(
        f"/admin/auth/user/{tenant_member.pk}/change/",
        _change_form(tenant_member, is_superuser="on", is_staff="on"),
        REMOTE_ADDR="10.1.2.3",
    )
    assert response.status_code == 302, response.content[:3000]
    tenant_member.refresh_from_db()
    assert tenant_member.is_superuser
    event = AuditEvent.objects.get(verb="user.access_changed", object_id=str(tenant_member.pk))
    assert (event.actor_id, event.actor_username) == (platform_admin.pk, "padmin")
    assert (event.object_type, event.object_id, event.object_repr) == ("auth.user", str(tenant_member.pk), "alice")
    assert event.before == {"is_superuser": False, "is_staff": False}
    assert event.after == {"is_superuser": True, "is_staff": True}
    assert event.source_ip == "10.1.2.3"


def test_groups_and_permissions_given_in_the_admin_are_audited(admin_client, tenant_member):
    editors = Group.objects.create(name="editors")
    permission = Permission.objects.get(codename="change_host")
    response = admin_client.post(
        f"/admin/auth/user/{tenant_member.pk}/change/",
        _change_form(tenant_member, groups=[editors.pk], user_permissions=[permission.pk]),
    )
    assert response.status_code == 302
    groups = AuditEvent.objects.get(verb="user.groups_changed")
    assert groups.before == {"groups": []} and groups.after == {"groups": ["editors"]}
    permissions = AuditEvent.objects.get(verb="user.permissions_changed")
    assert permissions.after == {"permissions": ["inventory.change_host"]}
    # the flags did not change: nothing said about them
    assert not AuditEvent.objects.filter(verb="user.access_changed", object_id=str(tenant_member.pk)).exists()


def test_a_groups_permissions_and_its_deletion_are_audited(platform_admin, tenant_member):
    group = Group.objects.create(name="operators")
    group.permissions.add(Permission.objects.get(codename="change_host"))
    tenant_member.groups.add(group)
    assert AuditEvent.objects.get(verb="group.permissions_changed").after == {"permissions": ["inventory.change_host"]}
    assert AuditEvent.objects.get(verb="user.groups_changed").after == {"groups": ["operators"]}
    group.user_set.clear()  # the reverse side, and a clear, name the person too
    assert AuditEvent.objects.filter(verb="user.groups_changed").count() == 2
    tenant_member.groups.add(group)
    group.delete()
    deleted = AuditEvent.objects.get(verb="group.deleted")
    assert deleted.before == {"name": "operators", "permissions": ["inventory.change_host"], "members": ["alice"]}


def test_a_shell_or_script_changing_flags_is_audited_as_the_system(tenant_member):
    tenant_member.is_active = False
    tenant_member.save()
    event = AuditEvent.objects.get(verb="user.access_changed")
    assert event.actor_id is None and event.after == {"is_active": False}


def test_a_sign_in_writing_last_login_costs_no_access_check(tenant_member, django_assert_num_queries):
    from django.contrib.auth.models import update_last_login

    with django_assert_num_queries(1):  # the UPDATE only: no read of the access flags
        update_last_login(None, tenant_member)
    assert not AuditEvent.objects.filter(verb="user.access_changed").exists()


def test_a_new_superuser_is_audited_a_plain_account_is_not(db):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("root", password="pw-for-tests-1")
    make_user("plain")
    created = AuditEvent.objects.filter(verb="user.created")
    assert [(e.object_repr, e.after["is_superuser"]) for e in created] == [("root", True)]


def test_a_membership_added_in_the_admin_is_audited_once(admin_client, tenant, platform_admin):
    """The admin writes through core.writes (audited there); the signal must not say it a second time."""
    newcomer = make_user("newcomer")
    response = admin_client.post(
        "/admin/tenancy/membership/add/", {"user": newcomer.pk, "tenant": tenant.pk, "role": Role.TENANT_MEMBER}
    )
    assert response.status_code == 302, response.content[:3000]
    events = AuditEvent.objects.filter(verb="membership.created", after__user_id=newcomer.pk)
    assert events.count() == 1
    assert events.get().actor_id == platform_admin.pk


def test_a_membership_made_through_the_service_is_audited_once(platform_admin, tenant):
    newcomer = make_user("newcomer")
    create_membership({"user": newcomer, "tenant": tenant, "role": Role.TENANT_MEMBER}, actor=platform_admin)
    assert AuditEvent.objects.filter(verb="membership.created", after__user_id=newcomer.pk).count() == 1


def test_memberships_written_outside_the_services_are_audited(tenant, other_tenant):
    newcomer = make_user("newcomer")
    membership = make_membership(newcomer, Role.TENANT_MEMBER, tenant)
    created = AuditEvent.objects.get(verb="membership.created", object_id=str(membership.pk))
    assert created.tenant_id == tenant.pk and created.actor_id is None
    membership.tenant = other_tenant
    membership.save()
    updated = AuditEvent.objects.get(verb="membership.updated", object_id=str(membership.pk))
    assert updated.before == {"tenant_id": tenant.pk} and updated.after == {"tenant_id": other_tenant.pk}
    Membership.objects.filter(pk=membership.pk).get().delete()
    assert AuditEvent.objects.filter(verb="membership.deleted", object_id=str(membership.pk)).count() == 1


def test_deleting_a_tenant_or_a_user_audits_the_memberships_it_takes_along(platform_admin, admin_client):
    initech = make_tenant("Initech", "initech")
    peter = make_user("peter")
    joined = make_membership(peter, Role.TENANT_MEMBER, initech)
    delete_tenant(initech, actor=platform_admin)
    gone = AuditEvent.objects.get(verb="membership.deleted", object_id=str(joined.pk))
    assert gone.actor_id is None  # no request here; in one, its signed-in user
    assert gone.before["user_id"] == peter.pk and "Initech" in gone.object_repr

    auditing = make_membership(peter, Role.AUDITOR)
    response = admin_client.post(f"/admin/auth/user/{peter.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert AuditEvent.objects.filter(verb="membership.deleted", object_id=str(auditing.pk)).exists()
    user_gone = AuditEvent.objects.get(verb="user.deleted", object_id=str(peter.pk))
    assert user_gone.actor_username == "padmin"
