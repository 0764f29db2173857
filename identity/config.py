"""The identity providers' settings, read from the environment (``portal/settings.py`` calls these).

Each provider is off unless its first variable is set: LDAP with ``PORTAL_LDAP_URI``, OpenID Connect
with ``PORTAL_OIDC_CLIENT_ID``. Nothing here touches the network or the database: settings are read
at start-up, and ``discover`` (``manage.py oidc_discover``) is run by a person, once, to find a
provider's endpoints. docs/deployment.md ("Identity providers") lists every variable.
"""

from __future__ import annotations

import json
import urllib.request

from django.core.exceptions import ImproperlyConfigured

from core.env import env_bool, env_choice, env_int, env_str

LDAP_BACKEND = "identity.ldap_backend.PortalLDAPBackend"
OIDC_BACKEND = "identity.oidc_backend.PortalOIDCBackend"

#: How the directory lists a group's members (``PORTAL_LDAP_GROUP_TYPE``) -> django-auth-ldap's class.
GROUP_TYPES = {
    "groupOfNames": "GroupOfNamesType",
    "groupOfUniqueNames": "GroupOfUniqueNamesType",
    "posixGroup": "PosixGroupType",
    "activeDirectory": "NestedActiveDirectoryGroupType",
}
_GROUP_FILTERS = {
    "groupOfNames": "(objectClass=groupOfNames)",
    "groupOfUniqueNames": "(objectClass=groupOfUniqueNames)",
    "posixGroup": "(objectClass=posixGroup)",
    "activeDirectory": "(objectClass=group)",
}
#: The endpoints a provider's discovery document names -> the variables they go in.
OIDC_ENDPOINTS = {
    "authorization_endpoint": "PORTAL_OIDC_AUTHORIZATION_ENDPOINT",
    "token_endpoint": "PORTAL_OIDC_TOKEN_ENDPOINT",
    "userinfo_endpoint": "PORTAL_OIDC_USERINFO_ENDPOINT",
    "jwks_uri": "PORTAL_OIDC_JWKS_ENDPOINT",
}


def _required(names: list[str], because: str) -> dict[str, str]:
    values = {name: env_str(name, "") for name in names}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise ImproperlyConfigured(f"{because}, so set {', '.join(missing)} too (docs/deployment.md).")
    return values


def ldap_settings() -> dict:
    """django-auth-ldap's ``AUTH_LDAP_*`` settings, or ``{}`` when ``PORTAL_LDAP_URI`` is unset."""
    uri = env_str("PORTAL_LDAP_URI", "")
    if not uri:
        return {}
    import ldap
    from django_auth_ldap import config as ldap_config

    need = _required(["PORTAL_LDAP_USER_SEARCH_BASE", "PORTAL_LDAP_GROUP_SEARCH_BASE"], "PORTAL_LDAP_URI is set")
    group_type = env_choice("PORTAL_LDAP_GROUP_TYPE", "groupOfNames", GROUP_TYPES)
    timeout = env_int("PORTAL_LDAP_TIMEOUT_S", 5, minimum=1)
    return {
        "AUTH_LDAP_SERVER_URI": uri,
        "AUTH_LDAP_START_TLS": env_bool("PORTAL_LDAP_START_TLS", False),
        # A service account that may search people and groups (the periodic sync needs it too).
        "AUTH_LDAP_BIND_DN": env_str("PORTAL_LDAP_BIND_DN", ""),
        "AUTH_LDAP_BIND_PASSWORD": env_str("PORTAL_LDAP_BIND_PASSWORD", ""),
        "AUTH_LDAP_USER_SEARCH": ldap_config.LDAPSearch(
            need["PORTAL_LDAP_USER_SEARCH_BASE"],
            ldap.SCOPE_SUBTREE,
            env_str("PORTAL_LDAP_USER_FILTER", "(uid=%(user)s)"),
        ),
        "AUTH_LDAP_GROUP_SEARCH": ldap_config.LDAPSearch(
            need["PORTAL_LDAP_GROUP_SEARCH_BASE"],
            ldap.SCOPE_SUBTREE,
            env_str("PORTAL_LDAP_GROUP_FILTER", _GROUP_FILTERS[group_type]),
        ),
        "AUTH_LDAP_GROUP_TYPE": getattr(ldap_config, GROUP_TYPES[group_type])(),
        "AUTH_LDAP_USER_ATTR_MAP": {
            "first_name": env_str("PORTAL_LDAP_ATTR_FIRST_NAME", "givenName"),
            "last_name": env_str("PORTAL_LDAP_ATTR_LAST_NAME", "sn"),
            "email": env_str("PORTAL_LDAP_ATTR_EMAIL", "mail"),
        },
        "AUTH_LDAP_ALWAYS_UPDATE_USER": True,
        "AUTH_LDAP_FIND_GROUP_PERMS": False,
        "AUTH_LDAP_CACHE_TIMEOUT": 0,  # group changes count at the next sign-in, not an hour later
        # A directory that does not answer fails the sign-in within seconds (local accounts still work).
        "AUTH_LDAP_CONNECTION_OPTIONS": {
            ldap.OPT_NETWORK_TIMEOUT: timeout,
            ldap.OPT_TIMEOUT: timeout,
            ldap.OPT_REFERRALS: 0,  # Active Directory's referrals need credentials of their own
        },
    }


def oidc_settings() -> dict:
    """mozilla-django-oidc's ``OIDC_*`` settings, or ``{}`` when ``PORTAL_OIDC_CLIENT_ID`` is unset."""
    client_id = env_str("PORTAL_OIDC_CLIENT_ID", "")
    if not client_id:
        return {}
    need = _required(["PORTAL_OIDC_CLIENT_SECRET", *OIDC_ENDPOINTS.values()], "PORTAL_OIDC_CLIENT_ID is set")
    return {
        "OIDC_RP_CLIENT_ID": client_id,
        "OIDC_RP_CLIENT_SECRET": need["PORTAL_OIDC_CLIENT_SECRET"],
        "OIDC_OP_AUTHORIZATION_ENDPOINT": need["PORTAL_OIDC_AUTHORIZATION_ENDPOINT"],
        "OIDC_OP_TOKEN_ENDPOINT": need["PORTAL_OIDC_TOKEN_ENDPOINT"],
        "OIDC_OP_USER_ENDPOINT": need["PORTAL_OIDC_USERINFO_ENDPOINT"],
        "OIDC_OP_JWKS_ENDPOINT": need["PORTAL_OIDC_JWKS_ENDPOINT"],
        "OIDC_RP_SIGN_ALGO": env_str("PORTAL_OIDC_SIGN_ALGO", "RS256"),
        "OIDC_RP_SCOPES": env_str("PORTAL_OIDC_SCOPES", "openid email profile groups"),
        "OIDC_USE_PKCE": True,
        "OIDC_TIMEOUT": env_int("PORTAL_OIDC_TIMEOUT_S", 10, minimum=1),
        # Where a sign-in that did not complete lands: the login page says so (identity_tags).
        "LOGIN_REDIRECT_URL_FAILURE": "/accounts/login/?sso=failed",
        "PORTAL_OIDC_NAME": env_str("PORTAL_OIDC_NAME", "single sign-on"),
        "PORTAL_OIDC_GROUPS_CLAIM": env_str("PORTAL_OIDC_GROUPS_CLAIM", "groups"),
        "PORTAL_OIDC_USERNAME_CLAIM": env_str("PORTAL_OIDC_USERNAME_CLAIM", "preferred_username"),
    }


def group_mapping_default() -> list[dict]:
    """``PORTAL_IDENTITY_GROUP_MAPPING``: a JSON list of ``{"source", "group", "tenant" (slug), "role"}``
    that holds alongside the mappings platform admins keep on /identity/ (``identity.mapping``)."""
    raw = env_str("PORTAL_IDENTITY_GROUP_MAPPING", "")
    if not raw:
        return []
    try:
        rows = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"PORTAL_IDENTITY_GROUP_MAPPING is not JSON: {exc}") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ImproperlyConfigured("PORTAL_IDENTITY_GROUP_MAPPING must be a JSON list of objects.")
    for row in rows:
        missing = [key for key in ("source", "group", "role") if not row.get(key)]
        if missing or row["source"] not in ("ldap", "oidc"):
            raise ImproperlyConfigured(
                f"PORTAL_IDENTITY_GROUP_MAPPING entry {row!r}: needs source (ldap or oidc), group and role."
            )
    return rows


def discover(issuer: str, *, timeout: float = 10) -> dict[str, str]:
    """The ``PORTAL_OIDC_*_ENDPOINT`` variables for ``issuer``, from its discovery document."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        document = json.load(response)
    return {variable: document[key] for key, variable in OIDC_ENDPOINTS.items()}
