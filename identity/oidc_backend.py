"""Signing in through an OpenID Connect provider (mozilla-django-oidc), the groups claim mapped.

A person is found by the provider's subject (``sub``, kept in ``ExternalAccount``), never by an address
or a name a provider might let people choose: the first sign-in makes an account named after the
``PORTAL_OIDC_USERNAME_CLAIM`` (made unique), without a usable local password. Each sign-in refreshes
the name and address and reconciles the memberships with the ``PORTAL_OIDC_GROUPS_CLAIM`` values
(``identity.services.reconcile``). A provider that does not answer fails the sign-in with a message on
the login page instead of an error page.
"""

from __future__ import annotations

import logging

import requests
from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from identity.models import ExternalAccount, Source
from identity.services import free_username, reconcile, remember

logger = logging.getLogger(__name__)


def claim_groups(claims: dict) -> list[str]:
    value = claims.get(getattr(settings, "PORTAL_OIDC_GROUPS_CLAIM", "groups")) or []
    if isinstance(value, str):
        value = [value]
    return sorted({str(group) for group in value if group})


class PortalOIDCBackend(OIDCAuthenticationBackend):
    def authenticate(self, request, **kwargs):
        try:
            return super().authenticate(request, **kwargs)
        except (requests.RequestException, SuspiciousOperation, ValueError) as exc:
            logger.warning("OIDC sign-in did not complete: %s", exc)
            return None

    def get_userinfo(self, access_token, id_token, payload):
        # The ID token's claims, then the userinfo endpoint's (some providers put groups in one only).
        self.claims = {**(payload or {}), **super().get_userinfo(access_token, id_token, payload)}
        return self.claims

    def verify_claims(self, claims):
        return bool(claims.get("sub"))

    def filter_users_by_claims(self, claims):
        accounts = ExternalAccount.objects.filter(source=Source.OIDC, subject=str(claims["sub"]))
        return self.UserModel.objects.filter(pk__in=accounts.values("user_id"))

    def describe_user_by_claims(self, claims):
        return f"subject {claims.get('sub')}"

    _DETAILS = {"email": "email", "first_name": "given_name", "last_name": "family_name"}

    def _details(self, user, claims) -> list[str]:
        """Copy the name and address the provider sent; the fields that changed."""
        changed = []
        for field, claim in self._DETAILS.items():
            if field == "email" and claims.get("email_verified") is False:
                continue  # an address the provider says it has not verified is not taken (people are found by it)
            value = str(claims.get(claim) or getattr(user, field))[:150]
            if value != getattr(user, field):
                setattr(user, field, value)
                changed.append(field)
        return changed

    def create_user(self, claims):
        wanted = claims.get(getattr(settings, "PORTAL_OIDC_USERNAME_CLAIM", "preferred_username")) or ""
        wanted = wanted.split("@", 1)[0] or (claims.get("email") or "").split("@", 1)[0] or f"oidc-{claims['sub']}"
        user = self.UserModel(**{self.UserModel.USERNAME_FIELD: free_username(wanted)})
        self._details(user, claims)
        user.set_unusable_password()
        user.save()
        return self._signed_in(user, claims)

    def update_user(self, user, claims):
        changed = self._details(user, claims)
        if changed:
            user.save(update_fields=changed)
        return self._signed_in(user, claims)

    def _signed_in(self, user, claims):
        groups = claim_groups(claims)
        remember(user, Source.OIDC, str(claims["sub"]), groups)
        reconcile(user, Source.OIDC, groups, trigger="sign-in")
        return user
