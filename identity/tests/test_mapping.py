"""The group mapping itself (no server needed): what groups grant, the reconciliation's rules, the
deployment's default from the environment, and the platform admins' page at /identity/."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ImproperlyConfigured

from allocations.tests.factories import make_membership, make_user
from audit.models import AuditEvent
from identity.config import group_mapping_default, ldap_settings, oidc_settings
from identity.models import GroupMapping, MappedMembership, Source
from identity.services import grants_for, reconcile, remember
from identity.sync import sync_oidc
from tenancy.models import Membership
from tenancy.roles import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def member_mapping(tenant):
    return GroupMapping.objects.create(source=Source.OIDC, group="GPU-Users", tenant=tenant, role=Role.TENANT_MEMBER)


def test_groups_match_without_case_and_only_for_their_source(member_mapping, tenant):
    assert grants_for(Source.OIDC, ["gpu-users"]) == {(tenant.pk, Role.TENANT_MEMBER): ["GPU-Users"]}
    assert grants_for(Source.LDAP, ["gpu-users"]) == {}
    assert grants_for(Source.OIDC, ["gpu-admins"]) == {}


def test_an_inactive_tenant_gets_no_new_member(member_mapping, tenant):
    tenant.is_active = False
    tenant.save()
    assert grants_for(Source.OIDC, ["gpu-users"]) == {}


def test_the_environment_default_maps_by_tenant_slug(settings, tenant):
    settings.PORTAL_IDENTITY_GROUP_MAPPING = [
        {"source": "ldap", "group": "gpu-users", "tenant": "acme", "role": "tenant-member"},
        {"source": "ldap", "group": "ops", "role": "auditor"},
        {"source": "ldap", "group": "ghosts", "tenant": "no-such-tenant", "role": "tenant-member"},
    ]
    assert grants_for(Source.LDAP, ["gpu-users", "ops", "ghosts"]) == {
        (tenant.pk, Role.TENANT_MEMBER): ["gpu-users"],
        (None, Role.AUDITOR): ["ops"],
    }


def test_group_mapping_default_reads_json_and_names_mistakes(monkeypatch):
    rows = [{"source": "oidc", "group": "staff", "role": "auditor"}]
    monkeypatch.setenv("PORTAL_IDENTITY_GROUP_MAPPING", json.dumps(rows))
    assert group_mapping_default() == rows
    monkeypatch.setenv("PORTAL_IDENTITY_GROUP_MAPPING", "[{")
    with pytest.raises(ImproperlyConfigured, match="not JSON"):
        group_mapping_default()
    monkeypatch.setenv("PORTAL_IDENTITY_GROUP_MAPPING", '[{"source": "saml", "group": "x", "role": "auditor"}]')
    with pytest.raises(ImproperlyConfigured, match="ldap or oidc"):
        group_mapping_default()


def test_providers_are_off_unless_configured_and_half_a_configuration_is_refused(monkeypatch):
    assert ldap_settings() == {} and oidc_settings() == {}
    monkeypatch.setenv("PORTAL_LDAP_URI", "ldap://directory.example.org")
    with pytest.raises(ImproperlyConfigured, match="PORTAL_LDAP_USER_SEARCH_BASE"):
        ldap_settings()
    monkeypatch.setenv("PORTAL_OIDC_CLIENT_ID", "portal")
    with pytest.raises(ImproperlyConfigured, match="PORTAL_OIDC_TOKEN_ENDPOINT"):
        oidc_settings()


def test_reconcile_grants_once_and_revokes_only_what_it_granted(member_mapping, tenant, other_tenant):
    user = make_user("dora")
    by_hand = make_membership(user, Role.TENANT_MEMBER, other_tenant)

    first = reconcile(user, Source.OIDC, ["gpu-users"], trigger="sign-in")
    again = reconcile(user, Source.OIDC, ["gpu-users"], trigger="sign-in")

    assert len(first.granted) == 1 and not again
    assert AuditEvent.objects.filter(verb="identity.membership_granted").count() == 1
    created = AuditEvent.objects.filter(verb="membership.created", object_id=str(first.granted[0].pk))
    assert created.count() == 1  # the row's own record (core.writes), once: the safety net stays silent
    reconcile(user, Source.OIDC, [], trigger="sign-in")
    assert list(Membership.objects.filter(user=user)) == [by_hand]


def test_a_membership_mapped_by_one_source_is_not_revoked_by_the_other(member_mapping, tenant):
    user = make_user("dora")
    reconcile(user, Source.OIDC, ["gpu-users"], trigger="sign-in")
    reconcile(user, Source.LDAP, [], trigger="sign-in")
    assert Membership.objects.filter(user=user, tenant=tenant).exists()


def test_removing_a_mapping_on_the_page_revokes_what_only_it_granted(client, platform_admin, member_mapping, tenant):
    user = make_user("dora")
    remember(user, Source.OIDC, "sub-dora", ["gpu-users"])
    reconcile(user, Source.OIDC, ["gpu-users"], trigger="sign-in")
    client.force_login(platform_admin)

    response = client.post(f"/identity/mappings/{member_mapping.pk}/delete/")

    assert response.status_code == 302
    assert not Membership.objects.filter(user=user).exists()
    assert AuditEvent.objects.get(verb="groupmapping.deleted").actor_id == platform_admin.pk
    assert AuditEvent.objects.get(verb="identity.membership_revoked").after["trigger"] == "mapping removed"


def test_adding_a_mapping_on_the_page_grants_to_people_already_seen_in_the_group(client, platform_admin, tenant):
    user = make_user("dora")
    remember(user, Source.OIDC, "sub-dora", ["gpu-users"])
    client.force_login(platform_admin)

    response = client.post(
        "/identity/", {"source": "oidc", "group": "gpu-users", "role": "tenant-member", "tenant": tenant.pk}
    )

    assert response.status_code == 302
    assert MappedMembership.objects.get(membership__user=user).membership.tenant == tenant
    assert AuditEvent.objects.get(verb="groupmapping.created").actor_id == platform_admin.pk
    assert "gpu-users" in client.get("/identity/").content.decode()


def test_the_page_refuses_a_tenant_member_mapping_without_a_tenant(client, platform_admin):
    client.force_login(platform_admin)
    response = client.post("/identity/", {"source": "ldap", "group": "gpu-users", "role": "tenant-member"})
    assert response.status_code == 200
    assert "needs a tenant" in response.content.decode()
    assert not GroupMapping.objects.exists()


def test_only_platform_admins_see_the_page(client, tenant_member, auditor):
    for person in (tenant_member, auditor):
        client.force_login(person)
        assert client.get("/identity/").status_code == 403
        assert client.post("/identity/sync/").status_code == 403


def test_oidc_sync_reapplies_mappings_to_the_groups_last_seen(member_mapping, tenant):
    user = make_user("dora")
    remember(user, Source.OIDC, "sub-dora", ["gpu-users"])
    reconcile(user, Source.OIDC, ["gpu-users"], trigger="sign-in")
    member_mapping.delete()

    result = sync_oidc()

    assert (result.checked, result.changed) == (1, 1)
    assert not Membership.objects.filter(user=user).exists()


def test_a_mapped_membership_changed_by_hand_is_left_as_the_admin_set_it(member_mapping, tenant, platform_admin):
    """Review finding: an admin made bob's mapped tenant-member row an auditor; the next sync saw a role no
    group grants, deleted it (ending bob's sessions) and granted tenant-member again, undoing the change."""
    from allocations.services import people

    bob = make_user("bob")
    (granted,) = reconcile(bob, Source.OIDC, ["gpu-users"], trigger="sign-in").granted
    people.set_role(granted, Role.AUDITOR, actor=platform_admin)

    again = reconcile(bob, Source.OIDC, ["gpu-users"], trigger="periodic sync")

    assert not again.revoked  # the changed row is the admin's now, not the mapping's
    roles = set(Membership.objects.filter(user=bob).values_list("role", "tenant_id"))
    assert (Role.AUDITOR, None) in roles
    assert not MappedMembership.objects.filter(membership_id=granted.pk).exists()


def test_switching_a_tenant_off_does_not_take_away_what_its_people_hold(member_mapping, tenant):
    """Review finding: an inactive tenant's mapped memberships were revoked at the next sync (and their
    people signed out), while hand-made ones stayed. Switched off, it gets nobody new and loses nobody."""
    dora = make_user("dora")
    reconcile(dora, Source.OIDC, ["gpu-users"], trigger="sign-in")
    tenant.is_active = False
    tenant.save()

    change = reconcile(dora, Source.OIDC, ["gpu-users"], trigger="periodic sync")

    assert not change and Membership.objects.filter(user=dora, tenant=tenant).exists()
    erin = make_user("erin")
    assert not reconcile(erin, Source.OIDC, ["gpu-users"], trigger="sign-in")  # nobody new


def test_an_address_the_provider_has_not_verified_is_not_taken():
    """Review finding: people are found by address when an admin adds them (people.find_person), so an
    OIDC account must not take an address its provider says it has not verified."""
    from django.contrib.auth import get_user_model

    from identity.oidc_backend import PortalOIDCBackend

    backend = PortalOIDCBackend.__new__(PortalOIDCBackend)  # _details reads only the claims
    user = get_user_model()(username="mallory")
    backend._details(user, {"email": "newhire@corp.example", "email_verified": False, "given_name": "M"})
    assert user.email == "" and user.first_name == "M"
    backend._details(user, {"email": "mallory@corp.example", "email_verified": True})
    assert user.email == "mallory@corp.example"
