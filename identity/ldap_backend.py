"""Signing in with a directory password (django-auth-ldap), the person's groups read at each sign-in.

``PortalLDAPBackend`` is django-auth-ldap's backend (the directory checks the password; an account is
made at the first sign-in, with no usable local password, and its name and address are refreshed
each time) that then reads the person's groups and reconciles their memberships with the mapping
(``identity.services.reconcile``). A directory that does not answer is reported on the login page
(``directory_unreachable``); local accounts are checked next, by Django's own backend, and still work.
"""

from __future__ import annotations

import contextvars
import logging

import ldap
from django_auth_ldap.backend import LDAPBackend, ldap_error

from identity.models import ExternalAccount, Source
from identity.services import free_username, reconcile, remember

logger = logging.getLogger(__name__)

#: What the login page says when the directory did not answer (identity_tags).
DIRECTORY_DOWN = (
    "The directory server could not be reached, so directory (LDAP) accounts cannot sign in right now. "
    "Local accounts still can; try again in a few minutes."
)
#: Where the errors django-auth-ldap reports are collected while ``collect_errors`` runs (the sync).
_collected: contextvars.ContextVar[list | None] = contextvars.ContextVar("identity_ldap_errors", default=None)


def directory_groups(ldap_user) -> list[str]:
    """The person's groups as the directory lists them: each group's name (cn) and its DN."""
    return sorted(set(ldap_user.group_names) | set(ldap_user.group_dns))


class PortalLDAPBackend(LDAPBackend):
    def get_or_build_user(self, username, ldap_user):
        """The account this directory person signed in with before (their ExternalAccount); else an
        account of that name made for them ahead by an admin (no usable password, no other provider's);
        else a new one. Never a local account with a password of its own: a directory person "admin" must
        not become the portal's local admin (django-auth-ldap's own lookup takes any account by name)."""
        account = ExternalAccount.objects.filter(source=Source.LDAP, subject__iexact=username).first()
        if account is not None:
            return account.user, False
        model = self.get_user_model()
        for user in model.objects.filter(**{f"{model.USERNAME_FIELD}__iexact": username}):
            if not user.has_usable_password() and not user.external_accounts.exists():
                return user, False
        return model(**{model.USERNAME_FIELD: free_username(username.lower())}), True

    def authenticate_ldap_user(self, ldap_user, password):
        user = super().authenticate_ldap_user(ldap_user, password)
        if user is not None:
            try:
                groups = directory_groups(ldap_user)
            except ldap.LDAPError as exc:
                # Signed in by the directory, whose group search then failed: keep what the person holds.
                logger.warning("LDAP groups of %s could not be read (%s); memberships left as they are", user, exc)
                return user
            remember(user, Source.LDAP, user.ldap_username, groups)
            reconcile(user, Source.LDAP, groups, trigger="sign-in")
        return user


def _report(sender, context, user, request, exception, **kwargs):
    """django-auth-ldap's ``ldap_error``: the sign-in page says the directory is down; the sync counts it."""
    if request is not None:
        request.identity_directory_error = DIRECTORY_DOWN
    collected = _collected.get()
    if collected is not None:
        collected.append(exception)


class collect_errors:  # a context manager, named for the with-statement it reads in
    """``with collect_errors() as errors:`` the LDAP errors django-auth-ldap reported (and swallowed)."""

    def __enter__(self) -> list:
        self.errors: list = []
        self.token = _collected.set(self.errors)
        return self.errors

    def __exit__(self, *exc) -> None:
        _collected.reset(self.token)


def connect() -> None:
    ldap_error.connect(_report, dispatch_uid="identity.ldap_error")
