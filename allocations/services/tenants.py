"""Tenants, their quotas and memberships. One transaction per change, audited."""

from __future__ import annotations

from django.db import transaction

from allocations.models import ProfileQuota, Quota
from allocations.services.quotas import check_within_ceilings
from audit import services as audit
from core.errors import PortalError
from core.limits import MAX_DESKTOPS
from core.writes import create_object, delete_object, update_object
from tenancy.models import Membership, Tenant


def create_tenant(data: dict, *, actor) -> Tenant:
    """Create a tenant together with its quota (defaults unless ``quota`` is given)."""
    quota_fields = data.pop("quota", None) or {}

    def add_quota(tenant: Tenant) -> None:
        create_object(Quota(tenant=tenant, **quota_fields), actor=actor, tenant=tenant)

    tenant = Tenant(**data)
    return create_object(tenant, actor=actor, tenant=tenant, after_save=add_quota)


def update_tenant(tenant: Tenant, changes: dict, *, actor) -> Tenant:
    return update_object(tenant, changes, actor=actor, tenant=tenant)


def delete_tenant(tenant: Tenant, *, actor) -> None:
    delete_object(tenant, actor=actor, tenant=tenant)


def _limits(quota: Quota) -> dict[str, int]:
    return {pq.profile.name: pq.max_instances for pq in quota.profile_limits.select_related("profile")}


def _check_profile_limits(items: list[dict]) -> None:
    """Each profile at most once, each cap a whole number from 0 to MAX_DESKTOPS (bulk_create skips the
    model's validators, so the rule is checked here for pages and API alike)."""
    names = [str(item["profile"]) for item in items]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise PortalError(f"Each profile may have one limit; repeated: {', '.join(repeated)}.")
    wrong = [
        str(item["profile"])
        for item in items
        if not isinstance(item["max_instances"], int)
        or isinstance(item["max_instances"], bool)
        or not 0 <= item["max_instances"] <= MAX_DESKTOPS
    ]
    if wrong:
        raise PortalError(
            f"A per-profile limit is a whole number from 0 to {MAX_DESKTOPS} desktops; not so for: {', '.join(wrong)}."
        )


def update_quota(quota: Quota, changes: dict, *, actor) -> Quota:
    """Change a tenant's limits. ``profile_limits`` (a list of {profile, max_instances}),
    when given, replaces the per-profile caps as a whole. Rows are written before the audit
    events (the audit chain's head lock is taken last, see inventory.services.sync)."""
    profile_limits = changes.pop("profile_limits", None)
    check_within_ceilings(changes)
    _check_profile_limits(profile_limits or [])
    with transaction.atomic():
        quota = Quota.objects.select_for_update().select_related("tenant").get(pk=quota.pk)
        before_limits = _limits(quota)
        if profile_limits is not None:
            quota.profile_limits.all().delete()
            ProfileQuota.objects.bulk_create(
                ProfileQuota(quota=quota, profile=item["profile"], max_instances=item["max_instances"])
                for item in profile_limits
            )
        quota = update_object(quota, changes, actor=actor, tenant=quota.tenant)
        after_limits = _limits(quota)
        if after_limits != before_limits:
            audit.record_row(
                "quota.profile_limits_updated",
                quota,
                actor=actor,
                tenant=quota.tenant,
                before={"profile_limits": before_limits},
                after={"profile_limits": after_limits},
            )
    return quota


def create_membership(data: dict, *, actor) -> Membership:
    with transaction.atomic():
        membership = create_object(Membership(**data), actor=actor, tenant=data.get("tenant"))
    return membership  # open sockets and consoles re-check the person's access: allocations.signals


def update_membership(membership: Membership, changes: dict, *, actor) -> Membership:
    with transaction.atomic():
        membership = update_object(membership, changes, actor=actor, tenant=changes.get("tenant", membership.tenant))
    return membership


def delete_membership(membership: Membership, *, actor) -> None:
    with transaction.atomic():
        delete_object(membership, actor=actor, tenant=membership.tenant)
