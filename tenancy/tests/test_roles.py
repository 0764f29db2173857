"""Roles, who sees what, and the audit vocabulary of the models that moved into tenancy."""

import pytest

from allocations.services.tenants import create_membership, create_tenant
from audit.models import AuditEvent
from tenancy.models import Membership, Tenant
from tenancy.roles import ACTORS, ADMINS, EVERYONE, OPERATORS, Role, may_act_for, roles_of, sees_everything

pytestmark = pytest.mark.django_db


def test_each_persona_holds_exactly_its_roles(platform_admin, auditor, tenant_member, tenant):
    assert roles_of(platform_admin).names == ["platform-admin"]
    assert roles_of(auditor).names == ["auditor"]
    assert roles_of(tenant_member).names == ["tenant-member"]
    assert roles_of(tenant_member).tenant_ids == {tenant.pk}
    assert [sees_everything(u) for u in (platform_admin, auditor, tenant_member)] == [True, True, False]
    assert roles_of(auditor).any_of(OPERATORS) and not roles_of(auditor).any_of(ACTORS)
    assert roles_of(tenant_member).any_of(EVERYONE) and not roles_of(tenant_member).any_of(ADMINS)


def test_an_inactive_user_holds_no_role_and_sees_nothing(tenant_member, platform_admin):
    for user in (tenant_member, platform_admin):
        user.is_active = False
        user.save()
        user._portal_roles = None
        assert roles_of(user).names == []
        assert not Tenant.objects.visible_to(user).exists()
        assert not Membership.objects.visible_to(user).exists()


def test_only_the_owner_or_a_platform_admin_may_act(tenant_member, outsider, auditor, platform_admin):
    owner_id = tenant_member.pk
    assert [may_act_for(u, owner_id) for u in (tenant_member, outsider, auditor, platform_admin)] == [
        True,
        False,
        False,
        True,
    ]
    assert not may_act_for(tenant_member, None)


def test_members_see_their_own_tenants_and_memberships_only(tenant_member, outsider, tenant, other_tenant, auditor):
    assert list(Tenant.objects.visible_to(tenant_member)) == [tenant]
    assert set(Membership.objects.visible_to(tenant_member).values_list("user__username", flat=True)) == {"alice"}
    assert set(Tenant.objects.visible_to(auditor)) == {tenant, other_tenant}


def test_events_about_moved_models_keep_the_object_type_auditors_filter_by(platform_admin, auditor):
    """Tenant and Membership moved from allocations to tenancy; the trail still names them as before."""
    tenant = create_tenant({"name": "Moved Co", "slug": "moved-co"}, actor=platform_admin)
    create_membership({"user": auditor, "tenant": tenant, "role": Role.TENANT_MEMBER}, actor=platform_admin)
    types = set(
        AuditEvent.objects.filter(verb__in=["tenant.created", "membership.created"]).values_list(
            "object_type", flat=True
        )
    )
    assert types == {"allocations.tenant", "allocations.membership"}
    assert AuditEvent.objects.about(tenant).filter(verb="tenant.created").count() == 1
