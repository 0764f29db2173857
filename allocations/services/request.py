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

from django.db import transaction

from allocations import placement
from allocations.choices import DesktopStatus
from allocations.exceptions import NoCapacity, NotAllowed, QuotaExceeded
from allocations.models import Desktop, DesktopTemplate, Quota, Tenant
from allocations.services.access import roles_of
from allocations.services.lifecycle import _enqueue, _record
from allocations.services.quotas import check_room, usage_of
from inventory.choices import GPUMode
from inventory.models import GPU, Host
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


def _candidates(template: DesktopTemplate) -> list[placement.HostState]:
    gpus = GPU.objects.filter(present=True, host__state="online").select_related("current_profile")
    if template.profile_id:
        gpus = gpus.filter(mode=GPUMode.VGPU, model=template.profile.board)
    else:
        gpus = gpus.filter(mode=GPUMode.PASSTHROUGH)
        if template.passthrough_model:
            gpus = gpus.filter(model=template.passthrough_model)
    by_host: dict[int, list[placement.GPUState]] = {}
    for gpu in gpus:
        by_host.setdefault(gpu.host_id, []).append(
            placement.GPUState(
                id=gpu.pk,
                model=gpu.model,
                mode=gpu.mode,
                profile=gpu.current_profile.name if gpu.current_profile_id else None,
                instances_used=gpu.instances_used,
                max_instances=gpu.current_profile.max_per_gpu if gpu.current_profile_id else 0,
            )
        )
    return [
        placement.HostState(
            id=host.pk,
            name=host.name,
            free_vcpus=host.cpu_cores - host.vcpus_used,
            free_memory_mib=host.memory_mib - host.memory_used_mib,
            gpus=tuple(by_host.get(host.pk, ())),
        )
        for host in Host.objects.online().filter(pk__in=by_host)
    ]


def _request_shape(template: DesktopTemplate) -> placement.Request:
    profile = template.profile
    return placement.Request(
        vcpus=template.vcpus,
        memory_mib=template.memory_mib,
        profile=placement.Profile(profile.name, profile.board, profile.framebuffer_mib, profile.max_per_gpu)
        if profile
        else None,
        gpu_count=template.gpu_count,
        model=template.passthrough_model,
    )


def _claim(template: DesktopTemplate, decision: placement.Decision) -> bool:
    """Take the decision's capacity, all or nothing (the caller wraps this in a savepoint)."""
    if not capacity.claim_host(decision.host_id, template.vcpus, template.memory_mib):
        return False
    if template.profile_id:
        return capacity.claim_vgpu(decision.gpu_ids[0], template.profile)
    return capacity.claim_whole_gpus(list(decision.gpu_ids))


def passthrough_framebuffer(decision: placement.Decision) -> int:
    """What whole GPUs charge to the quota: their boards' framebuffer."""
    return sum(GPU.objects.filter(pk__in=decision.gpu_ids).values_list("framebuffer_mib", flat=True))


class _LostRace(Exception):
    pass


def request_desktop(*, actor, template_id: int, duration_hours: int, name: str = "", tenant_id=None) -> Desktop:
    """Ask for a desktop (see ``_request_desktop``); placement failures are counted by reason for /metrics,
    outside the transaction that rolled back."""
    try:
        return _request_desktop(
            actor=actor, template_id=template_id, duration_hours=duration_hours, name=name, tenant_id=tenant_id
        )
    except NoCapacity as exc:
        count_placement_failure(exc.details.get("resource", "unknown"))
        raise


def _request_desktop(*, actor, template_id: int, duration_hours: int, name: str = "", tenant_id=None) -> Desktop:
    """Ask for a desktop. Returns it REQUESTED with its capacity claimed and provisioning queued;
    raises NotFound/NotAllowed, QuotaExceeded or NoCapacity (409) with a message for people."""
    tenant = resolve_tenant(actor, tenant_id)
    template = DesktopTemplate.objects.filter(pk=template_id, is_active=True).select_related("profile").first()
    if template is None or not template.allowed_tenants.filter(pk=tenant.pk).exists():
        raise NotFound("No such desktop template is offered to your tenant.")
    if duration_hours < 1:
        raise PortalError("A desktop lasts at least one hour (duration_hours ≥ 1).")
    shape = _request_shape(template)

    with transaction.atomic():
        quota = Quota.objects.select_for_update().get(tenant=tenant)  # one tenant's requests queue up here
        if duration_hours > quota.max_desktop_hours:
            raise QuotaExceeded(
                f"A desktop may last at most {quota.max_desktop_hours} hours; you asked for {duration_hours}.",
                details={"resource": "desktop_hours", "allowed": quota.max_desktop_hours, "requested": duration_hours},
            )
        usage = usage_of(tenant)
        fb_per_gpu = template.profile.framebuffer_mib if template.profile_id else 0
        if template.profile_id:
            check_room(quota, usage, framebuffer_mib=fb_per_gpu, profile_name=template.profile.name)
        else:
            check_room(quota, usage, framebuffer_mib=0, profile_name=None)  # desktops count; framebuffer below
        for _attempt in range(CLAIM_ATTEMPTS):
            try:
                decision = placement.place(shape, _candidates(template))
            except placement.NoPlacement as exc:
                raise NoCapacity(exc.message, details={"resource": exc.resource}) from exc
            try:
                with transaction.atomic():  # savepoint: a lost race undoes only this attempt
                    if not _claim(template, decision):
                        raise _LostRace
                    if not template.profile_id:
                        fb_per_gpu = passthrough_framebuffer(decision)
                        check_room(quota, usage, framebuffer_mib=fb_per_gpu, profile_name=None)
                    desktop = _create(actor, tenant, template, decision, duration_hours, name, fb_per_gpu)
                break
            except _LostRace:
                continue
        else:
            raise NoCapacity(
                "Capacity changed while placing your desktop and none was left; try again.",
                details={"resource": "contention"},
            )
        _enqueue("provision", desktop)
    return desktop


def _create(actor, tenant, template, decision, duration_hours, name, framebuffer_mib) -> Desktop:
    desktop = Desktop.objects.create(
        name=(name or template.name)[:100],
        tenant=tenant,
        owner=actor,
        template=template,
        profile=template.profile,
        gpu_count=template.gpu_count,
        vcpus=template.vcpus,
        memory_mib=template.memory_mib,
        framebuffer_mib=framebuffer_mib,
        duration_hours=duration_hours,
        status=DesktopStatus.REQUESTED,
        host_id=decision.host_id,
        mdev_uuid=uuid.uuid4() if template.profile_id else None,
        domain_uuid=uuid.uuid4(),
    )
    desktop.domain_name = f"desktop-{desktop.pk}"
    desktop.save(update_fields=["domain_name"])
    desktop.gpus.set(decision.gpu_ids)
    desktop.tenant = tenant
    _record(
        desktop,
        "desktop.requested",
        actor=actor,
        before={},
        after={
            "status": desktop.status,
            "template": template.name,
            "profile": template.profile.name if template.profile_id else None,
            "gpu_count": desktop.gpu_count,
            "host": decision.host_id,
            "gpus": list(decision.gpu_ids),
            "duration_hours": duration_hours,
            "framebuffer_mib": framebuffer_mib,
        },
    )
    return Desktop.objects.select_related("host", "tenant").get(pk=desktop.pk)
