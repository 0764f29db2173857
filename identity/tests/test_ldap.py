"""Signing in with a directory password against a real OpenLDAP server (``slapd``, started per test
with a small directory: alice and bob in gpu-users, carol in gpu-admins), and the group mapping
following the directory at the next sign-in and at the periodic sync."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from allocations.tests.factories import make_membership, make_tenant, make_user
from audit.models import AuditEvent
from core import live
from identity.ldap_backend import DIRECTORY_DOWN
from identity.models import ExternalAccount, MappedMembership
from identity.sync import sync_ldap
from identity.tasks import sync_identities
from identity.tests.servers import LDAP_PEOPLE
from tenancy.models import Membership
from tenancy.roles import Role, roles_of

pytestmark = pytest.mark.django_db


def sign_in(client, username: str, password: str):
    return client.post("/accounts/login/", {"username": username, "password": password})


@pytest.fixture
def published(monkeypatch):
    """What was pushed to live sockets and consoles (``core.live.publish_many`` still sends it)."""
    sent: list[tuple[str, str]] = []
    original = live.publish_many

    def spy(groups, type_, payload):
        sent.extend((group, type_) for group in groups)
        return original(groups, type_, payload)

    monkeypatch.setattr(live, "publish_many", spy)
    return sent


def test_directory_password_creates_the_account_and_the_mapped_membership(client, ldap_portal, ldap_mappings, tenant):
    response = sign_in(client, "alice", LDAP_PEOPLE["alice"])

    assert response.status_code == 302, response.content.decode()[:2000]
    alice = get_user_model().objects.get(username="alice")
    assert client.session["_auth_user_id"] == str(alice.pk)
    assert not alice.has_usable_password()  # the directory holds the password, not the portal
    assert (alice.email, alice.first_name) == ("alice@example.org", "Alice")
    membership = Membership.objects.get(user=alice)
    assert (membership.tenant, membership.role) == (tenant, Role.TENANT_MEMBER)
    assert MappedMembership.objects.get(membership=membership).groups == ["gpu-users"]
    assert ExternalAccount.objects.get(user=alice).subject == "alice"
    event = AuditEvent.objects.get(verb="identity.membership_granted")
    assert event.actor_id is None and event.tenant_id == tenant.pk
    assert event.after["source"] == "ldap" and event.after["groups"] == ["gpu-users"]
    assert event.after["trigger"] == "sign-in"


def test_admin_group_grants_platform_admin(client, ldap_portal, ldap_mappings):
    assert sign_in(client, "carol", LDAP_PEOPLE["carol"]).status_code == 302
    carol = get_user_model().objects.get(username="carol")
    assert roles_of(carol).platform_admin
    assert client.get("/identity/").status_code == 200  # the mapping page is platform admins'


def test_wrong_directory_password_is_refused(client, ldap_portal, ldap_mappings):
    response = sign_in(client, "alice", "not-alice-password")

    assert response.status_code == 200
    assert "didn't match" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert not get_user_model().objects.filter(username="alice").exists()
    assert AuditEvent.objects.filter(verb="auth.sign_in_failed").exists()


def test_removed_from_group_loses_membership_at_next_sign_in_and_sockets_are_told(
    client, ldap_portal, ldap_mappings, tenant, published, django_capture_on_commit_callbacks
):
    """Regression (issue 17): bob left gpu-users in the directory; his next sign-in takes Acme away,
    audited, and his open consoles and live socket re-check (closed: he may no longer see them)."""
    assert sign_in(client, "bob", LDAP_PEOPLE["bob"]).status_code == 302
    bob = get_user_model().objects.get(username="bob")
    assert roles_of(bob).tenant_ids == {tenant.pk}
    ldap_portal.remove_member("gpu-users", "bob")
    published.clear()

    client.logout()
    with django_capture_on_commit_callbacks(execute=True):
        assert sign_in(client, "bob", LDAP_PEOPLE["bob"]).status_code == 302

    assert not Membership.objects.filter(user=bob).exists()
    revoked = AuditEvent.objects.get(verb="identity.membership_revoked")
    assert revoked.actor_id is None and revoked.tenant_id == tenant.pk
    assert revoked.after["user"] == "bob" and revoked.after["tenant"] == "acme" and revoked.after["groups"] == []
    assert AuditEvent.objects.filter(verb="membership.deleted", object_id=revoked.object_id).exists()
    assert (live.console_user_group(bob.pk), "console.recheck") in published
    assert (live.user_group(bob.pk), "access.changed") in published


def test_hand_made_memberships_are_never_taken_away(client, ldap_portal, ldap_mappings, tenant):
    """A membership a platform admin gave by hand stays when the person is not (or no longer) in a
    mapped group, and one held by hand before the mapping granted the same is not marked as mapped."""
    bob = make_user("bob", password=None)  # made ahead by an admin, no password of its own: the directory's bob
    own = make_membership(bob, Role.TENANT_MEMBER, tenant)  # by hand, same tenant as the mapping grants
    globex = make_tenant("Globex", "globex")
    other = make_membership(bob, Role.TENANT_MEMBER, globex)
    assert sign_in(client, "bob", LDAP_PEOPLE["bob"]).status_code == 302
    assert not MappedMembership.objects.exists()  # already held: not granted twice, not marked

    ldap_portal.remove_member("gpu-users", "bob")
    sync_ldap()

    assert set(Membership.objects.filter(user=bob)) == {own, other}
    assert not AuditEvent.objects.filter(verb="identity.membership_revoked").exists()


def test_periodic_sync_removes_people_who_left_the_group_without_signing_in(
    client, ldap_portal, ldap_mappings, tenant, published, django_capture_on_commit_callbacks
):
    for name in ("alice", "bob"):
        assert sign_in(client, name, LDAP_PEOPLE[name]).status_code == 302
        client.logout()
    bobs_browser, alices_browser = Client(), Client()
    assert sign_in(bobs_browser, "bob", LDAP_PEOPLE["bob"]).status_code == 302
    assert sign_in(alices_browser, "alice", LDAP_PEOPLE["alice"]).status_code == 302
    ldap_portal.remove_member("gpu-users", "bob")
    published.clear()

    with django_capture_on_commit_callbacks(execute=True):
        result = sync_identities()  # the beat task, run here

    # bob's session ended with what the group gave him (his next page asks him to sign in); alice's did not
    assert bobs_browser.get("/").status_code == 302
    assert alices_browser.get("/").status_code == 200

    assert result["ldap"] == "2 checked, 1 changed"
    members = set(Membership.objects.filter(tenant=tenant).values_list("user__username", flat=True))
    assert members == {"alice"}
    revoked = AuditEvent.objects.get(verb="identity.membership_revoked")
    assert revoked.after["trigger"] == "periodic sync" and revoked.after["user"] == "bob"
    bob = get_user_model().objects.get(username="bob")
    assert (live.console_user_group(bob.pk), "console.recheck") in published


def test_directory_down_is_said_on_the_login_page_and_local_accounts_still_sign_in(client, ldap_portal, ldap_mappings):
    make_user("localpat", password="local-pw-123")
    ldap_portal.stop()

    response = sign_in(client, "alice", LDAP_PEOPLE["alice"])
    assert response.status_code == 200
    assert DIRECTORY_DOWN in response.content.decode()
    assert "_auth_user_id" not in client.session

    response = sign_in(client, "localpat", "local-pw-123")
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(get_user_model().objects.get(username="localpat").pk)


def test_sync_with_the_directory_down_changes_nothing(client, ldap_portal, ldap_mappings, tenant):
    assert sign_in(client, "alice", LDAP_PEOPLE["alice"]).status_code == 302
    ldap_portal.stop()

    result = sync_ldap()

    assert "did not answer" in result.error and result.changed == 0
    assert Membership.objects.filter(user__username="alice", tenant=tenant).exists()


def test_someone_gone_from_the_directory_keeps_nothing_from_it(client, ldap_portal, ldap_mappings, tenant):
    assert sign_in(client, "alice", LDAP_PEOPLE["alice"]).status_code == 302
    conn = ldap_portal.connect()
    conn.delete_s("uid=alice,ou=people,dc=example,dc=org")
    conn.unbind_s()

    result = sync_ldap()

    assert (result.checked, result.changed, result.error) == (1, 1, "")
    assert not Membership.objects.filter(user__username="alice").exists()


def test_a_directory_person_never_takes_over_a_local_account_with_its_own_password(client, ldap_portal, ldap_mappings):
    """Review finding: django-auth-ldap looks accounts up by name, so a directory "bob" signing in with the
    directory's password became the local "bob" (here a platform admin with a local password) and kept
    its memberships. The directory's bob now gets an account of its own."""
    local = make_user("bob", password="local-bob-pw")
    make_membership(local, Role.PLATFORM_ADMIN)

    assert sign_in(client, "bob", LDAP_PEOPLE["bob"]).status_code == 302

    signed_in = get_user_model().objects.get(pk=int(client.session["_auth_user_id"]))
    assert signed_in.pk != local.pk and signed_in.username == "bob-2"
    assert not signed_in.has_usable_password()
    assert set(Membership.objects.filter(user=signed_in).values_list("role", flat=True)) == {Role.TENANT_MEMBER}
    local.refresh_from_db()
    assert local.check_password("local-bob-pw") and not local.external_accounts.exists()
    client.logout()
    assert sign_in(client, "bob", LDAP_PEOPLE["bob"]).status_code == 302  # the same directory account next time
    assert int(client.session["_auth_user_id"]) == signed_in.pk
