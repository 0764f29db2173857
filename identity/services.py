"""Group → role mapping: what a person's groups grant, and reconciling their memberships with it.

``reconcile`` runs at each sign-in through LDAP or OIDC and from the periodic sync (``identity.sync``).
It adds the memberships the person's groups grant and takes away those the mapping made earlier that
no group grants any longer. Memberships made by hand (no ``MappedMembership`` row) are never taken
away, and one a person already holds by hand is not made twice. Each change is written through
``core.writes`` (``membership.created``/``deleted``, so the row's record is the one every path
writes) and explained by ``identity.membership_granted``/``revoked`` (the source, the groups, what
triggered it), in the same transaction, with the system as the actor. A revocation also ends the
person's sessions and closes their consoles and live pages after commit (``tenancy.sessions``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from core.writes import create_object, delete_object
from identity.models import ExternalAccount, GroupMapping, MappedMembership
from tenancy import sessions
from tenancy.models import Membership, Tenant
from tenancy.roles import Role

#: (tenant id or None, role) -> the groups that grant it.
Grants = dict[tuple[int | None, str], list[str]]


@dataclass
class Change:
    granted: list[Membership] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.granted or self.revoked)


def _fold(name: str) -> str:
    return " ".join(name.split()).casefold()


def _default_mappings(source: str) -> list[tuple[str, int | None, str]]:
    """``PORTAL_IDENTITY_GROUP_MAPPING`` (settings) for ``source``: (group, tenant id, role). An entry
    naming a tenant that does not exist grants nothing (it is shown as such on /identity/)."""
    rows = [row for row in getattr(settings, "PORTAL_IDENTITY_GROUP_MAPPING", []) if row["source"] == source]
    slugs = {row.get("tenant") for row in rows if row.get("tenant")}
    tenants = dict(Tenant.objects.filter(slug__in=slugs).values_list("slug", "pk"))
    out = []
    for row in rows:
        tenant_id = tenants.get(row.get("tenant")) if row.get("tenant") else None
        if row["role"] == Role.TENANT_MEMBER and tenant_id is None:
            continue
        out.append((row["group"], tenant_id if row["role"] == Role.TENANT_MEMBER else None, row["role"]))
    return out


def grants_for(source: str, groups, *, inactive_too: bool = False) -> Grants:
    """What ``groups`` (names or DNs, compared without case) grant through ``source``'s mappings:
    the rows platform admins keep and the deployment's default. Inactive tenants get nothing new
    (``inactive_too``: what the groups cover, so that a tenant switched off does not take away what
    its people hold there)."""
    held = {_fold(g) for g in groups if g}
    rows = list(GroupMapping.objects.filter(source=source).values_list("group", "tenant_id", "role"))
    rows += _default_mappings(source)
    inactive = set() if inactive_too else set(Tenant.objects.filter(is_active=False).values_list("pk", flat=True))
    grants: Grants = {}
    for group, tenant_id, role in rows:
        if _fold(group) in held and tenant_id not in inactive:
            grants.setdefault((tenant_id, role), []).append(group)
    return grants


def free_username(wanted: str) -> str:
    """``wanted`` cleaned, or with -2, -3 … added: an account made for a provider's person never takes
    an existing account's name (so never its memberships or its password)."""
    User = get_user_model()
    base = re.sub(r"[^\w.+-]", "", wanted)[:140] or "user"
    name, n = base, 1
    while User.objects.filter(**{f"{User.USERNAME_FIELD}__iexact": name}).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def forget_hand_changes(sender, instance: Membership, **kwargs) -> None:
    """``pre_save`` of Membership: a mapped membership whose tenant or role is changed by hand becomes a
    hand-made one (its mark goes), so the mapping neither takes it away nor undoes the change."""
    if instance.pk is None:
        return
    before = Membership.objects.filter(pk=instance.pk).values_list("tenant_id", "role").first()
    if before is not None and before != (instance.tenant_id, instance.role):
        MappedMembership.objects.filter(membership_id=instance.pk).delete()


def _explain(verb: str, membership: Membership, *, source: str, groups: list[str], trigger: str) -> None:
    audit.record_row(
        verb,
        membership,
        actor=None,  # the system: the mapping decided, on the directory's or provider's word
        tenant=membership.tenant,
        after={
            "user": membership.user.get_username(),
            "role": membership.role,
            "tenant": membership.tenant.slug if membership.tenant_id else None,
            "source": source,
            "groups": sorted(groups),
            "trigger": trigger,
        },
    )


def _grant(user, key, groups: list[str], *, source: str, trigger: str) -> Membership:
    tenant_id, role = key
    tenant = Tenant.objects.get(pk=tenant_id) if tenant_id else None
    membership = Membership(user=user, tenant=tenant, role=role)

    def mark(row):
        MappedMembership.objects.create(membership=row, source=source, groups=sorted(groups))

    create_object(membership, actor=None, tenant=tenant, after_save=mark)
    _explain("identity.membership_granted", membership, source=source, groups=groups, trigger=trigger)
    return membership


def _revoke(mapped: MappedMembership, *, source: str, groups: list[str], trigger: str) -> str:
    membership = mapped.membership
    text = str(membership)
    # Recorded before the row goes (the event names its id); both commit or neither.
    _explain("identity.membership_revoked", membership, source=source, groups=groups, trigger=trigger)
    delete_object(membership, actor=None, tenant=membership.tenant)
    return text


def remember(user, source: str, subject: str, groups) -> ExternalAccount:
    """The person's identity at ``source`` and the groups it was seen in just now."""
    account, _ = ExternalAccount.objects.update_or_create(
        source=source,
        user=user,
        defaults={"subject": subject, "groups": sorted(set(groups)), "last_synced_at": timezone.now()},
    )
    return account


def reconcile(user, source: str, groups, *, trigger: str) -> Change:
    """Bring ``user``'s memberships from ``source``'s mapping in line with ``groups`` (see module)."""
    groups = sorted({g for g in groups if g})
    change = Change()
    with transaction.atomic():
        # One reconciliation of a person at a time (two sign-ins at once, a sign-in during the sync).
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        wanted = grants_for(source, groups)
        covered = grants_for(source, groups, inactive_too=True)  # kept, even where a tenant is switched off
        held = set(Membership.objects.filter(user=user).values_list("tenant_id", "role"))
        for key, via in sorted(wanted.items(), key=lambda item: (item[0][0] or 0, item[0][1])):
            if key not in held:  # held already (by hand, or through the other source): left as it is
                change.granted.append(_grant(user, key, via, source=source, trigger=trigger))
        mapped = MappedMembership.objects.filter(membership__user=user, source=source).select_related(
            "membership__tenant", "membership__user"
        )
        for row in mapped:
            if (row.membership.tenant_id, row.membership.role) not in covered:
                change.revoked.append(_revoke(row, source=source, groups=groups, trigger=trigger))
        if change.revoked:
            # What a group took away ends the person's sessions too (their consoles and live pages close
            # after commit): they sign in again with what they still have. At a sign-in this runs before the
            # new session exists, so only the old ones end.
            sessions.end_sessions(user)
            sessions.close_connections(user.pk, "Your access changed: a directory group no longer grants it.")
    if change:
        user.__dict__.pop("_portal_roles", None)  # tenancy.roles caches a person's roles on the object
    return change


def reapply_stored(source: str | None = None, *, trigger: str) -> int:
    """Re-apply the mappings to the groups each external account was last seen in (after a mapping
    was added or removed); returns how many people's memberships changed."""
    accounts = ExternalAccount.objects.select_related("user")
    if source:
        accounts = accounts.filter(source=source)
    return sum(1 for account in accounts if reconcile(account.user, account.source, account.groups, trigger=trigger))


def create_mapping(mapping: GroupMapping, *, actor) -> GroupMapping:
    """A platform admin's new mapping (audited ``groupmapping.created``); people already seen in the
    group get the role now rather than at their next sign-in."""
    create_object(mapping, actor=actor, tenant=mapping.tenant)
    reapply_stored(mapping.source, trigger="mapping added")
    return mapping


def delete_mapping(mapping: GroupMapping, *, actor) -> None:
    """Remove a mapping (audited ``groupmapping.deleted``) and the memberships only it granted."""
    delete_object(mapping, actor=actor, tenant=mapping.tenant)
    reapply_stored(mapping.source, trigger="mapping removed")
