"""Fixtures of the identity tests: the real servers (``servers.py``) and the portal configured for them
the way a deployment is, through the environment variables ``identity.config`` reads."""

from __future__ import annotations

import pytest

from identity.config import LDAP_BACKEND, OIDC_BACKEND, ldap_settings, oidc_settings
from identity.models import GroupMapping, Source
from identity.tests import servers
from tenancy.roles import Role


def configure(settings, monkeypatch, environment: dict, reader, backend: str) -> dict:
    """Set ``environment``, read it as portal/settings.py does, and apply the result to ``settings``."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    values = reader()
    for name, value in values.items():
        setattr(settings, name, value)
    backends = list(settings.AUTHENTICATION_BACKENDS)
    settings.AUTHENTICATION_BACKENDS = [backends[0], backend, *backends[1:]]
    return values


@pytest.fixture
def slapd(tmp_path):
    server = servers.start_slapd(tmp_path / "slapd")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ldap_portal(slapd, settings, monkeypatch):
    """The portal signing in against ``slapd`` (service account: the directory's admin)."""
    configure(
        settings,
        monkeypatch,
        {
            "PORTAL_LDAP_URI": slapd.uri,
            "PORTAL_LDAP_BIND_DN": servers.ADMIN_DN,
            "PORTAL_LDAP_BIND_PASSWORD": servers.ADMIN_PASSWORD,
            "PORTAL_LDAP_USER_SEARCH_BASE": servers.PEOPLE,
            "PORTAL_LDAP_GROUP_SEARCH_BASE": servers.GROUPS,
            "PORTAL_LDAP_TIMEOUT_S": "2",
        },
        ldap_settings,
        LDAP_BACKEND,
    )
    return slapd


@pytest.fixture
def ldap_mappings(tenant):
    """gpu-users -> member of Acme (``tenant``), gpu-admins -> platform admin."""
    return [
        GroupMapping.objects.create(source=Source.LDAP, group="gpu-users", tenant=tenant, role=Role.TENANT_MEMBER),
        GroupMapping.objects.create(source=Source.LDAP, group="gpu-admins", role=Role.PLATFORM_ADMIN),
    ]


@pytest.fixture(scope="module")
def oidc_provider(tmp_path_factory):
    """The OIDC provider process; its client returns to the test client's callback (a live server's
    too once the test calls ``allow_redirect``)."""
    provider = servers.OIDCProvider(tmp_path_factory.mktemp("oidc"), redirect_uri="http://testserver/oidc/callback/")
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def oidc_portal(oidc_provider, settings, monkeypatch):
    configure(settings, monkeypatch, oidc_provider.portal_environment(), oidc_settings, OIDC_BACKEND)
    return oidc_provider
