"""Claiming and returning host and GPU capacity with conditional updates.

Each claim is one ``UPDATE … WHERE <there is room>`` that must touch exactly the
rows it names; if another transaction took the room first, it touches fewer and
the claim fails, with nothing half-done (callers run each attempt in a
savepoint). Locks are always taken host first, then GPUs, so concurrent claims
cannot deadlock. Every claim and release goes through the host's row (its counters and
``capacity_version`` in one UPDATE), which is how the scheduler's cache
(``allocations.placement.Fleet``) knows which hosts to read again.
"""

from __future__ import annotations

from django.db import connection
from django.db.models import F, Q
from django.db.models.expressions import RawSQL

from inventory.choices import VGPU_MODES, WHOLE_MODES, HostState
from inventory.models import GPU, Host, PlacementFailure, VGPUProfile


def bump():
    """A new ``Host.capacity_version``: on PostgreSQL at least the writing transaction's id (and more than
    before, so two changes in one transaction differ too), so a reader can ask for the hosts changed by
    transactions it has not seen yet (``allocations.placement.Fleet``); elsewhere +1."""
    if connection.vendor == "postgresql":
        return RawSQL("GREATEST(txid_current(), capacity_version + 1)", [])
    return F("capacity_version") + 1


def touch_host(host_id: int | None) -> None:
    """Mark the host changed (its GPU rows were added, edited or removed)."""
    if host_id:
        Host.objects.filter(pk=host_id).update(capacity_version=bump())


def claim_host(host_id: int, vcpus: int, memory_mib: int) -> bool:
    return (
        Host.objects.filter(
            pk=host_id,
            state=HostState.ONLINE,
            vcpus_used__lte=F("cpu_cores") - vcpus,
            memory_used_mib__lte=F("memory_mib") - memory_mib,
        ).update(
            vcpus_used=F("vcpus_used") + vcpus,
            memory_used_mib=F("memory_used_mib") + memory_mib,
            capacity_version=bump(),
        )
        == 1
    )


def claim_vgpu(gpu_id: int, profile: VGPUProfile, host_id: int | None = None) -> bool:
    """One instance of ``profile`` on the GPU (of ``host_id``, when given): it must run that profile with
    room left, or be empty."""
    room = Q(current_profile=profile, instances_used__lt=profile.max_per_gpu) | Q(
        current_profile__isnull=True, instances_used=0
    )
    return (
        GPU.objects.filter(room, pk=gpu_id, mode__in=VGPU_MODES, present=True, model=profile.board)
        .filter(**({"host_id": host_id} if host_id else {}))
        .update(current_profile=profile, instances_used=F("instances_used") + 1)
        == 1
    )


def claim_whole_gpus(gpu_ids: list[int], host_id: int | None = None) -> bool:
    """The GPUs whole (all of ``host_id``, when given): each must be in a mode that allows it and hold
    nothing (no vGPU, not taken)."""
    taken = (
        GPU.objects.filter(
            pk__in=gpu_ids, mode__in=WHOLE_MODES, present=True, instances_used=0, current_profile__isnull=True
        )
        .filter(**({"host_id": host_id} if host_id else {}))
        .update(instances_used=1)
    )
    return taken == len(set(gpu_ids))


def release_host(host_id: int, vcpus: int, memory_mib: int) -> None:
    Host.objects.filter(pk=host_id).update(
        vcpus_used=F("vcpus_used") - vcpus,
        memory_used_mib=F("memory_used_mib") - memory_mib,
        capacity_version=bump(),
    )


def release_gpus(gpu_ids: list[int]) -> None:
    """Return one instance on each GPU; a vGPU board left empty forgets its profile (it may take any type)."""
    GPU.objects.filter(pk__in=gpu_ids, instances_used__gt=0).update(instances_used=F("instances_used") - 1)
    GPU.objects.filter(pk__in=gpu_ids, instances_used=0, mode__in=VGPU_MODES).update(current_profile=None)


def count_placement_failure(reason: str) -> None:
    updated = PlacementFailure.objects.filter(reason=reason).update(count=F("count") + 1)
    if not updated:
        obj, created = PlacementFailure.objects.get_or_create(reason=reason, defaults={"count": 1})
        if not created:
            PlacementFailure.objects.filter(pk=obj.pk).update(count=F("count") + 1)
