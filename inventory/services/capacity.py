"""Claiming and returning host and GPU capacity with conditional updates.

Each claim is one ``UPDATE … WHERE <there is room>`` that must touch exactly the
rows it names; if another transaction took the room first, it touches fewer and
the claim fails, and the caller rolls its savepoint back (undoing the host's
share and any GPUs taken, and releasing their row locks). Locks are always taken
host first, then GPUs, and a request holds one host's at a time, so concurrent
claims cannot deadlock. Every claim and release goes through the host's row (its counters and
``capacity_version`` in one UPDATE), which is how the scheduler's cache
(``allocations.placement.fleet.Fleet``) knows which hosts to read again.
"""

from __future__ import annotations

from django.db import connection
from django.db.models import F

from inventory.choices import VGPU_MODES, WHOLE_MODES
from inventory.models import GPU, Host, PlacementFailure, VGPUProfile
from inventory.querysets import ONLINE_STATE, next_capacity_version_sql

# The claims are the request path's hottest statements: plain SQL, one statement each (the ORM's
# query building cost more than PostgreSQL's work on them). Same text on PostgreSQL and SQLite.
_HOST, _GPU = Host._meta.db_table, GPU._meta.db_table


def _rows(sql: str, params: list) -> int:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.rowcount


def _in(values) -> str:
    return ", ".join(["%s"] * len(values))


def claim_host(host_id: int, vcpus: int, memory_mib: int) -> bool:
    """The host's vCPUs and RAM, if it is online and has them free."""
    return (
        _rows(
            f"UPDATE {_HOST} SET vcpus_used = vcpus_used + %s, memory_used_mib = memory_used_mib + %s, "
            f"capacity_version = {next_capacity_version_sql()} "
            f"WHERE id = %s AND state = %s AND vcpus_used <= cpu_cores - %s AND memory_used_mib <= memory_mib - %s",
            [vcpus, memory_mib, host_id, ONLINE_STATE, vcpus, memory_mib],
        )
        == 1
    )


def claim_vgpu(gpu_id: int, profile: VGPUProfile, host_id: int | None = None) -> bool:
    """One instance of ``profile`` on the GPU (of ``host_id``, when given): it must run that profile with
    room left, or be empty. The board and the instance limit are the catalog row's as committed now, not
    the caller's copy (placement caches the catalog)."""
    modes = sorted(VGPU_MODES)
    catalog = VGPUProfile._meta.db_table
    sql = (
        f"UPDATE {_GPU} SET current_profile_id = %s, instances_used = instances_used + 1 "
        f"WHERE id = %s AND mode IN ({_in(modes)}) AND present = %s "
        f"AND model = (SELECT board FROM {catalog} WHERE id = %s) "
        f"AND ((current_profile_id = %s AND instances_used < (SELECT max_per_gpu FROM {catalog} WHERE id = %s)) "
        f"OR (current_profile_id IS NULL AND instances_used = 0))"
    )
    params = [profile.pk, gpu_id, *modes, True, profile.pk, profile.pk, profile.pk]
    if host_id:
        sql, params = sql + " AND host_id = %s", [*params, host_id]
    return _rows(sql, params) == 1


def claim_whole_gpus(gpu_ids: list[int], host_id: int | None = None) -> bool:
    """The GPUs whole (all of ``host_id``, when given): each must be in a mode that allows it, hold
    nothing (no vGPU, not taken) and sit on a host that can pass PCI devices through (as its row says
    now, whatever the scheduler's cache believed). One UPDATE: with several GPUs it may take only some
    (the caller's savepoint undoes those)."""
    ids, modes = sorted(set(gpu_ids)), sorted(WHOLE_MODES)
    sql = (
        f"UPDATE {_GPU} SET instances_used = 1 "
        f"WHERE id IN ({_in(ids)}) AND mode IN ({_in(modes)}) AND present = %s "
        f"AND instances_used = 0 AND current_profile_id IS NULL "
        f"AND host_id IN (SELECT id FROM {_HOST} WHERE passthrough_capable = %s)"
    )
    params = [*ids, *modes, True, True]
    if host_id:
        sql, params = sql + " AND host_id = %s", [*params, host_id]
    return _rows(sql, params) == len(ids)


def release_host(host_id: int, vcpus: int, memory_mib: int) -> None:
    _rows(
        f"UPDATE {_HOST} SET vcpus_used = vcpus_used - %s, memory_used_mib = memory_used_mib - %s, "
        f"capacity_version = {next_capacity_version_sql()} WHERE id = %s",
        [vcpus, memory_mib, host_id],
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
