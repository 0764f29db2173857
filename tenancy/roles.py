"""The roles, and who holds which: the one definition every page, API and service reads.

Roles come from Membership rows (a Django superuser counts as a platform admin). They are read once
per user object and cached on it, so a request asks the database once however many checks it makes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import models


class Role(models.TextChoices):
    PLATFORM_ADMIN = "platform-admin", "Platform admin"
    TENANT_MEMBER = "tenant-member", "Tenant member"
    AUDITOR = "auditor", "Auditor"


#: Roles that apply platform-wide and therefore carry no tenant.
PLATFORM_ROLES = (Role.PLATFORM_ADMIN, Role.AUDITOR)

# Who may use a page or an endpoint: the groups every view names (``read_roles``/``write_roles``,
# ``role_required``).
ADMINS = (Role.PLATFORM_ADMIN,)
#: Read across every tenant (``sees_everything``).
OPERATORS = (Role.PLATFORM_ADMIN, Role.AUDITOR)
MEMBERS = (Role.TENANT_MEMBER,)
#: Act on desktops: their owners, and platform admins on anyone's.
ACTORS = (Role.PLATFORM_ADMIN, Role.TENANT_MEMBER)
EVERYONE = (Role.PLATFORM_ADMIN, Role.AUDITOR, Role.TENANT_MEMBER)
NOBODY = ()


@dataclass(frozen=True)
class Roles:
    platform_admin: bool = False
    auditor: bool = False
    tenant_ids: frozenset[int] = field(default_factory=frozenset)

    @property
    def tenant_member(self) -> bool:
        return bool(self.tenant_ids)

    @property
    def names(self) -> list[str]:
        names = []
        if self.platform_admin:
            names.append(Role.PLATFORM_ADMIN.value)
        if self.auditor:
            names.append(Role.AUDITOR.value)
        if self.tenant_ids:
            names.append(Role.TENANT_MEMBER.value)
        return names

    @property
    def sees_everything(self) -> bool:
        """Platform admins and auditors read across all tenants (the ``OPERATORS``)."""
        return self.any_of(OPERATORS)

    def any_of(self, allowed) -> bool:
        """Holds at least one of the roles ``allowed`` (a group above)."""
        return bool(set(self.names) & {str(role) for role in allowed})


_NOBODY = Roles()


def roles_of(user) -> Roles:
    if user is None or not user.is_authenticated or not user.is_active:
        return _NOBODY
    cached = getattr(user, "_portal_roles", None)
    if cached is not None:
        return cached
    rows = list(user.memberships.values_list("role", "tenant_id"))
    roles = Roles(
        platform_admin=user.is_superuser or any(role == Role.PLATFORM_ADMIN for role, _ in rows),
        auditor=any(role == Role.AUDITOR for role, _ in rows),
        tenant_ids=frozenset(tenant for role, tenant in rows if role == Role.TENANT_MEMBER and tenant),
    )
    user._portal_roles = roles
    return roles


def sees_everything(user) -> bool:
    """Platform admins and auditors read across all tenants."""
    return roles_of(user).sees_everything


def is_platform_admin(user) -> bool:
    return roles_of(user).platform_admin


def may_act_for(user, owner_id: int | None) -> bool:
    """May ``user`` act on something ``owner_id`` owns (release, extend, reboot a desktop)? Its owner
    may, and a platform admin may act on anyone's; auditors only read."""
    return (owner_id is not None and owner_id == getattr(user, "pk", None)) or is_platform_admin(user)
