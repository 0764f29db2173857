"""Shared fixtures: the four personas every API test checks isolation with, and API clients."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from allocations.choices import Role
from allocations.tests.factories import make_membership, make_tenant, make_user


@pytest.fixture(autouse=True)
def _fast_settings(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def tenant(db):
    return make_tenant("Acme Research", "acme")


@pytest.fixture
def other_tenant(db):
    return make_tenant("Globex Design", "globex")


@pytest.fixture
def platform_admin(db):
    user = make_user("padmin")
    make_membership(user, Role.PLATFORM_ADMIN)
    return user


@pytest.fixture
def auditor(db):
    user = make_user("auditor")
    make_membership(user, Role.AUDITOR)
    return user


@pytest.fixture
def tenant_member(tenant):
    user = make_user("alice")
    make_membership(user, Role.TENANT_MEMBER, tenant)
    return user


@pytest.fixture
def outsider(other_tenant):
    """A tenant member of another tenant: must never see the first tenant's rows."""
    user = make_user("mallory")
    make_membership(user, Role.TENANT_MEMBER, other_tenant)
    return user


@pytest.fixture
def personas(platform_admin, auditor, tenant_member, outsider):
    return {
        "platform_admin": platform_admin,
        "auditor": auditor,
        "tenant_member": tenant_member,
        "outsider": outsider,
    }


@pytest.fixture
def api():
    """An API client; ``api.as_user(user)`` authenticates it with that user's token."""
    from rest_framework.authtoken.models import Token

    client = APIClient()

    def as_user(user):
        client.credentials()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    client.as_user = as_user
    return client
