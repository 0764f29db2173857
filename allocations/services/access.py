"""Who the caller is, in portal terms, and reads across the tenant boundary.

Roles come from Membership rows (a Django superuser counts as a platform admin).
They are read once per user object and cached on it, so a request asks the
database once however many checks it makes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from allocations.choices import Role


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


_NOBODY = Roles()


def roles_of(user) -> Roles:
    if user is None or not user.is_authenticated or not user.is_active:
        return _NOBODY
    cached = getattr(user, "_portal_roles", None)
    if cached is not None:
        return cached
    from allocations.models import Membership

    rows = list(Membership.objects.filter(user=user).values_list("role", "tenant_id"))
    roles = Roles(
        platform_admin=user.is_superuser or any(role == Role.PLATFORM_ADMIN for role, _ in rows),
        auditor=any(role == Role.AUDITOR for role, _ in rows),
        tenant_ids=frozenset(tenant for role, tenant in rows if role == Role.TENANT_MEMBER and tenant),
    )
    user._portal_roles = roles
    return roles


def sees_everything(user) -> bool:
    """Platform admins and auditors read across all tenants."""
    roles = roles_of(user)
    return roles.platform_admin or roles.auditor


def get_desktop_for(user, pk, *, acting: bool = False):
    """The desktop ``pk`` as ``user`` may see it (operators: any; others: their own), or NotFound for
    missing rows and rows that are not theirs alike. ``acting=True`` (release, extend, reboot): only
    the owner or a platform admin; an auditor who is also a tenant member acts on their own only."""
    from allocations.models import Desktop
    from portal.errors import NotFound

    desktop = (
        Desktop.objects.visible_to(user).select_related("profile", "template", "host", "tenant").filter(pk=pk).first()
    )
    if desktop is None or (acting and desktop.owner_id != user.pk and not roles_of(user).platform_admin):
        raise NotFound("No such desktop (it does not exist or it is not yours).")
    return desktop


def may_act_on(user, desktop) -> bool:
    return desktop.owner_id == user.pk or roles_of(user).platform_admin
