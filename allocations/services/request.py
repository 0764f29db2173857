"""Requesting a desktop: quota, placement and the capacity claim in one transaction.

Order of locks (the same for every request, so requests never deadlock): the
tenant's Quota row (serialises one tenant's requests, so quota can never be
overrun), then the chosen host, then its GPUs (conditional updates in
``inventory.services.capacity``). A claim that loses a race is rolled back to
its savepoint and placement is retried on fresh data; the provision task is
queued to the host's own queue only once everything has committed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F

from allocations import placement
from allocations.choices import DesktopStatus
from allocations.exceptions import NoCapacity, NotAllowed, QuotaExceeded
from allocations.models import Desktop, DesktopTemplate, Quota, Tenant
from allocations.services.access import roles_of
from allocations.services.lifecycle import _enqueue, _record
from allocations.services.quotas import check_room, usage_of
from inventory.models import GPU, VGPUProfile
from inventory.services import capacity
from inventory.services.capacity import count_placement_failure
from portal.errors import NotFound, PortalError

CLAIM_ATTEMPTS = 8


def resolve_tenant(actor, tenant_id: int | None) -> Tenant:
    tenant_ids = roles_of(actor).tenant_ids
    if tenant_id is not None:
        if tenant_id not in tenant_ids:
            raise NotFound("No such tenant among yours.")
        tenant = Tenant.objects.get(pk=tenant_id)
    elif not tenant_ids:
        raise NotAllowed("Only members of a tenant can request desktops.")
    elif len(tenant_ids) > 1:
        raise PortalError("You belong to several tenants: say which one (tenant).")
    else:
        tenant = Tenant.objects.get(pk=next(iter(tenant_ids)))
    if not tenant.is_active:
        raise NotAllowed(f"{tenant.name} is inactive: it keeps its history but gets nothing new.")
    return tenant


@dataclass(frozen=True)
class Grant:
    """What one desktop of a template would take: the placement's choice, the vGPU profile it gets
    (a share template's is chosen by the placement) and the framebuffer it charges to the quota."""

    choice: placement.Choice
    profile: VGPUProfile | None
    framebuffer_mib: int


def check_quota_first(quota: Quota, usage, template: DesktopTemplate) -> None:
    """The quota checks that do not depend on where the desktop lands."""
    if template.profile_id:
        check_room(quota, usage, framebuffer_mib=template.profile.framebuffer_mib, profile_name=template.profile.name)
    else:
        check_room(quota, usage, framebuffer_mib=0, profile_name=None)  # desktops count; the rest once placed


def decide(template: DesktopTemplate, quota: Quota, usage, *, fresh: bool = False, avoid=frozenset()) -> Grant:
    """Where a desktop of ``template`` would go now and what it would charge; raises NoCapacity, or
    QuotaExceeded when what the placement chose (a share's profile, whole boards) is over quota.
    Claims nothing: ``request_desktop`` claims the grant, the New-desktop page only shows it."""
    try:
        choice = placement.place(template, fresh=fresh, avoid=avoid)
    except placement.NoPlacement as exc:
        raise NoCapacity(exc.message, details={"resource": exc.resource}) from exc
    if choice.profile_id:
        profile = template.profile if template.profile_id == choice.profile_id else placement.profile(choice.profile_id)
        grant = Grant(choice, profile, profile.framebuffer_mib)
    else:
        fb = sum(GPU.objects.filter(pk__in=choice.gpu_ids).values_list("framebuffer_mib", flat=True))
        grant = Grant(choice, None, fb)
    if not template.profile_id:
        check_room(
            quota,
            usage,
            framebuffer_mib=grant.framebuffer_mib,
            profile_name=grant.profile.name if grant.profile else None,
        )
    return grant


def _claim(template: DesktopTemplate, grant: Grant) -> bool:
    """Take the grant's capacity, all or nothing (the caller wraps this in a savepoint)."""
    choice = grant.choice
    if not capacity.claim_host(choice.host_id, template.vcpus, template.memory_mib):
        return False
    if grant.profile is not None:
        return capacity.claim_vgpu(choice.gpu_ids[0], grant.profile, choice.host_id)
    if choice.gpu_ids:
        return capacity.claim_whole_gpus(list(choice.gpu_ids), choice.host_id)
    return True


class _LostRace(Exception):
    pass


def request_desktop(
    *, actor, template_id: int, duration_hours: int, name: str = "", tenant_id=None, queue_provisioning: bool = True
) -> Desktop:
    """Ask for a desktop (see ``_request_desktop``); placement failures are counted by reason for /metrics,
    outside the transaction that rolled back. ``queue_provisioning=False`` claims and records without
    building anything (the trace replay's scratch database has no hosts to build on)."""
    try:
        return _request_desktop(
            actor=actor,
            template_id=template_id,
            duration_hours=duration_hours,
            name=name,
            tenant_id=tenant_id,
            queue_provisioning=queue_provisioning,
        )
    except NoCapacity as exc:
        count_placement_failure(exc.details.get("resource", "unknown"))
        raise


def _request_desktop(
    *, actor, template_id: int, duration_hours: int, name: str = "", tenant_id=None, queue_provisioning: bool = True
) -> Desktop:
    """Ask for a desktop. Returns it REQUESTED with its capacity claimed and provisioning queued;
    raises NotFound/NotAllowed, QuotaExceeded or NoCapacity (409) with a message for people."""
    tenant = resolve_tenant(actor, tenant_id)
    template = (
        DesktopTemplate.objects.filter(pk=template_id, is_active=True, allowed_tenants=tenant)
        .select_related("profile")
        .first()
    )
    if template is None:
        raise NotFound("No such desktop template is offered to your tenant.")
    if duration_hours < 1:
        raise PortalError("A desktop lasts at least one hour (duration_hours ≥ 1).")

    with transaction.atomic():
        quota = Quota.objects.select_for_update().get(tenant=tenant)  # one tenant's requests queue up here
        if duration_hours > quota.max_desktop_hours:
            raise QuotaExceeded(
                f"A desktop may last at most {quota.max_desktop_hours} hours; you asked for {duration_hours}.",
                details={"resource": "desktop_hours", "allowed": quota.max_desktop_hours, "requested": duration_hours},
            )
        usage = usage_of(tenant, quota)
        check_quota_first(quota, usage, template)
        contended: set[int] = set()  # hosts where this request lost a claim to another one
        for attempt in range(CLAIM_ATTEMPTS):
            # after a lost claim: re-read everything, and go elsewhere than where others are filling up
            grant = decide(template, quota, usage, fresh=attempt > 0, avoid=frozenset(contended))
            try:
                with transaction.atomic():  # savepoint: a lost race undoes only this attempt
                    if not _claim(template, grant):
                        raise _LostRace
                    Quota.objects.filter(pk=quota.pk).update(
                        desktops_held=F("desktops_held") + 1,
                        framebuffer_held_mib=F("framebuffer_held_mib") + grant.framebuffer_mib,
                    )
                    desktop = _create(actor, tenant, template, grant, duration_hours, name)
                break
            except _LostRace:
                contended.add(grant.choice.host_id)
                continue
        else:
            raise NoCapacity(
                "Capacity changed while placing your desktop and none was left; try again.",
                details={"resource": "contention"},
            )
        if queue_provisioning:
            _enqueue("provision", desktop)
    return desktop


def _create(actor, tenant, template, grant: Grant, duration_hours, name) -> Desktop:
    decision, profile = grant.choice, grant.profile
    desktop = Desktop.objects.create(
        name=(name or template.name)[:100],
        tenant=tenant,
        owner=actor,
        template=template,
        profile=profile,
        gpu_count=template.gpu_count,
        vcpus=template.vcpus,
        memory_mib=template.memory_mib,
        framebuffer_mib=grant.framebuffer_mib,
        duration_hours=duration_hours,
        status=DesktopStatus.REQUESTED,
        host_id=decision.host_id,
        mdev_uuid=uuid.uuid4() if profile else None,
        domain_uuid=uuid.uuid4(),
    )
    desktop.domain_name = f"desktop-{desktop.pk}"
    desktop.save(update_fields=["domain_name"])
    Desktop.gpus.through.objects.bulk_create(
        [Desktop.gpus.through(desktop_id=desktop.pk, gpu_id=gpu_id) for gpu_id in decision.gpu_ids]
    )
    desktop = Desktop.objects.select_related("host", "tenant").get(pk=desktop.pk)
    # the audit event last: it holds the chain's head row until commit, so concurrent requests queue
    # there for as short a time as possible
    _record(
        desktop,
        "desktop.requested",
        actor=actor,
        before={},
        after={
            "status": desktop.status,
            "template": template.name,
            "profile": profile.name if profile else None,
            "gpu_count": desktop.gpu_count,
            "host": decision.host_id,
            "gpus": list(decision.gpu_ids),
            "duration_hours": duration_hours,
            "framebuffer_mib": grant.framebuffer_mib,
        },
    )
    return desktop
