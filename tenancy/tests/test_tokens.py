"""API tokens (tenancy.tokens): stored hashed, shown once, revocable from the portal and the API.

Issue 15: DRF's authtoken kept every key in plain text and the admin listed them all."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection

from audit.models import AuditEvent
from tenancy import tokens
from tenancy.models import APIToken

pytestmark = pytest.mark.django_db


def _me(client, key):
    return client.get("/api/me/", HTTP_AUTHORIZATION=f"Token {key}")


def _table_text() -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {APIToken._meta.db_table}")
        return repr(cursor.fetchall())


def test_the_token_endpoint_still_answers_a_key_that_the_database_does_not_hold(client, tenant_member):
    """Issue 15: the key was a column. Now only its SHA-256 and a short prefix are stored."""
    response = client.post("/api/auth/token/", {"username": "alice", "password": "pw-for-tests-1"})
    assert response.status_code == 200
    key = response.json()["token"]
    assert key.startswith("gpp_") and len(key) >= 40
    assert key not in _table_text()
    token = APIToken.objects.get()
    assert token.digest == hashlib.sha256(key.encode()).hexdigest() and key.startswith(token.prefix)
    assert _me(client, key).json()["username"] == "alice"
    created = AuditEvent.objects.get(verb="api_token.created")
    assert created.actor_id == tenant_member.pk and key not in repr([created.before, created.after])


def test_a_revoked_token_is_refused_with_401_and_words(client, tenant_member):
    token, key = tokens.issue_token(tenant_member, actor=tenant_member, name="ci")
    assert _me(client, key).status_code == 200
    tokens.revoke_token(token, actor=tenant_member)
    response = _me(client, key)
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]
    assert response["WWW-Authenticate"] == "Token"
    assert _me(client, key[:-1] + "x").status_code == 401
    assert AuditEvent.objects.filter(verb="api_token.revoked", object_id=str(token.pk)).count() == 1


def test_a_token_of_an_inactive_person_authenticates_nobody(client, tenant_member):
    _, key = tokens.issue_token(tenant_member, actor=tenant_member)
    tenant_member.is_active = False
    tenant_member.save()
    assert _me(client, key).status_code == 401


def test_last_used_is_kept_without_writing_on_every_call(client, tenant_member):
    token, key = tokens.issue_token(tenant_member, actor=tenant_member)
    assert token.last_used_at is None
    _me(client, key)
    token.refresh_from_db()
    first_use = token.last_used_at
    assert first_use is not None
    _me(client, key)
    token.refresh_from_db()
    assert token.last_used_at == first_use  # within a minute: not written again


def test_the_tokens_page_shows_a_new_key_once_and_revokes(client, tenant_member):
    client.force_login(tenant_member)
    assert b"You have no API token yet." in client.get("/account/tokens/").content
    made = client.post("/account/tokens/", {"name": "laptop"})
    assert made.status_code == 200 and made["Cache-Control"] == "no-store"
    token = APIToken.objects.get(user=tenant_member)
    key = made.context["new_key"]
    assert key in made.content.decode() and "shown this once" in made.content.decode()
    listing = client.get("/account/tokens/").content.decode()
    assert key not in listing and token.prefix in listing and "laptop" in listing
    assert b"/account/tokens/" in client.get("/").content  # linked from the person's menu

    revoked = client.post(f"/account/tokens/{token.pk}/revoke/", follow=True)
    assert "is revoked" in revoked.content.decode()
    assert _me(type(client)(), key).status_code == 401
    again = client.post(f"/account/tokens/{token.pk}/revoke/", follow=True)
    assert "already revoked" in again.content.decode()


def test_the_tokens_page_rotates_a_token(client, tenant_member):
    client.force_login(tenant_member)
    old, old_key = tokens.issue_token(tenant_member, actor=tenant_member, name="nightly")
    response = client.post(f"/account/tokens/{old.pk}/rotate/")
    new_key = response.context["new_key"]
    assert new_key in response.content.decode()
    anonymous = type(client)()
    assert _me(anonymous, old_key).status_code == 401
    assert _me(anonymous, new_key).status_code == 200
    assert APIToken.objects.active().get().name == "nightly"


def test_nobody_revokes_someone_elses_token_from_the_page(client, tenant_member, outsider):
    token, key = tokens.issue_token(tenant_member, actor=tenant_member)
    client.force_login(outsider)
    response = client.post(f"/account/tokens/{token.pk}/revoke/", follow=True)
    assert "no such token among yours" in response.content.decode()
    assert _me(type(client)(), key).status_code == 200


def test_the_api_makes_lists_rotates_and_revokes_tokens(api, tenant_member):
    client = api.as_user(tenant_member)
    made = client.post("/api/tokens/", {"name": "deploy"}, format="json")
    assert made.status_code == 201
    body = made.json()
    key = body["token"]
    assert body["name"] == "deploy" and key.startswith(body["prefix"])
    rows = client.get("/api/tokens/").json()["results"]
    assert {r["name"] for r in rows} == {"tests", "deploy"} and all("token" not in r for r in rows)

    rotated = client.post(f"/api/tokens/{body['id']}/rotate/")
    assert rotated.status_code == 201
    anonymous = type(client)()
    assert anonymous.get("/api/me/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 401
    new_key = rotated.json()["token"]
    assert anonymous.get("/api/me/", HTTP_AUTHORIZATION=f"Token {new_key}").status_code == 200

    assert client.delete(f"/api/tokens/{rotated.json()['id']}/").status_code == 204
    assert client.delete(f"/api/tokens/{rotated.json()['id']}/").json()["error"]["status"] == 409
    assert anonymous.get("/api/me/", HTTP_AUTHORIZATION=f"Token {new_key}").status_code == 401


def test_the_admin_lists_tokens_by_prefix_and_never_a_key(client, platform_admin, tenant_member):
    platform_admin.is_staff = platform_admin.is_superuser = True
    platform_admin.save()
    token, key = tokens.issue_token(tenant_member, actor=tenant_member)
    client.force_login(platform_admin)
    page = client.get("/admin/tenancy/apitoken/").content.decode()
    assert token.prefix in page and key not in page and token.digest not in page
    response = client.post(
        "/admin/tenancy/apitoken/", {"action": "revoke", "_selected_action": [token.pk]}, follow=True
    )
    assert response.status_code == 200
    revoked = AuditEvent.objects.get(verb="api_token.revoked")
    assert revoked.actor_id == platform_admin.pk
