"""The periodic sync (``identity.tasks.sync_identities``, Celery beat): people who left a group lose
what it granted without signing in again.

LDAP: each person who ever signed in through the directory is looked up again with the service
account (``PORTAL_LDAP_BIND_DN``), their groups read, and their memberships reconciled; someone no
longer in the directory at all keeps no membership from it. A directory that does not answer changes
nothing (an outage must not take everyone's access away); the run says so and stops.
OIDC: a provider cannot be asked about a person who is not signing in, so the mappings are re-applied
to the groups each person had at their last sign-in (a mapping removed since takes effect).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import ldap
from django.conf import settings
from django_auth_ldap.backend import _LDAPUser

from identity.ldap_backend import PortalLDAPBackend, collect_errors, directory_groups
from identity.models import ExternalAccount, Source
from identity.services import reapply_stored, reconcile, remember

logger = logging.getLogger(__name__)


@dataclass
class SyncResult:
    checked: int = 0
    changed: int = 0
    error: str = ""

    def __str__(self) -> str:
        text = f"{self.checked} checked, {self.changed} changed"
        return f"{text}; stopped: {self.error}" if self.error else text


def sync_ldap(*, trigger: str = "periodic sync") -> SyncResult:
    result = SyncResult()
    if not getattr(settings, "AUTH_LDAP_SERVER_URI", ""):
        return result
    backend = PortalLDAPBackend()
    for account in ExternalAccount.objects.filter(source=Source.LDAP).select_related("user").order_by("pk"):
        with collect_errors() as errors:
            try:
                # Looked up without touching the account (django-auth-ldap's populate_user would save it,
                # and every save of a person re-checks their consoles and sockets).
                entry = _LDAPUser(backend, username=account.subject)
                groups = directory_groups(entry) if entry.attrs is not None else []  # None: gone from it
            except ldap.LDAPError as exc:
                errors.append(exc)
        if errors:
            result.error = f"the directory did not answer for {account.subject} ({errors[0]}); nothing changed"
            logger.warning("LDAP sync: %s", result.error)
            break
        result.checked += 1
        remember(account.user, Source.LDAP, account.subject, groups)
        if reconcile(account.user, Source.LDAP, groups, trigger=trigger):
            result.changed += 1
    return result


def sync_oidc(*, trigger: str = "periodic sync") -> SyncResult:
    accounts = ExternalAccount.objects.filter(source=Source.OIDC)
    return SyncResult(checked=accounts.count(), changed=reapply_stored(Source.OIDC, trigger=trigger))


def sync_all(*, trigger: str = "periodic sync") -> dict[str, SyncResult]:
    return {"ldap": sync_ldap(trigger=trigger), "oidc": sync_oidc(trigger=trigger)}
