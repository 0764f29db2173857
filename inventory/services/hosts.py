"""Admin changes to hosts and GPUs. Each is one transaction with its audit event."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from core.errors import Conflict
from core.writes import create_object, delete_object, update_object
from inventory.choices import HostState
from inventory.models import GPU, Host
from inventory.querysets import next_capacity_version


def create_host(data: dict, *, actor) -> Host:
    return create_object(Host(**data), actor=actor)


def update_host(host: Host, changes: dict, *, actor) -> Host:
    return update_object(host, changes, actor=actor)


def delete_host(host: Host, *, actor) -> None:
    """Remove a host and its GPU rows (refused while anything still uses them)."""
    delete_object(host, actor=actor)


def create_gpu(data: dict, *, actor) -> GPU:
    return create_object(GPU(**data), actor=actor)


def _lock_gpu(gpu: GPU) -> GPU:
    """Lock the GPU's host, then the GPU (the claims' lock order), and return the locked row."""
    Host.objects.select_for_update().filter(pk=gpu.host_id).first()
    return GPU.objects.select_for_update().get(pk=gpu.pk)


def update_gpu(gpu: GPU, changes: dict, *, actor) -> GPU:
    """Mode and profile follow what runs on the board: they cannot change under running desktops."""
    with transaction.atomic():
        locked = _lock_gpu(gpu)
        for name, value in changes.items():
            setattr(locked, name, value)
        blocked = locked.changes_blocked_by_desktops()  # the same rule the model's clean() applies
        if blocked:
            raise Conflict(
                f"{locked} has {locked.instances_used} desktop instance(s) in use; release them before changing "
                f"{', '.join(blocked)}."
            )
        return update_object(locked, changes, actor=actor)


def delete_gpu(gpu: GPU, *, actor) -> None:
    """Refused while desktops hold instances on it; a GPU that vanished is marked by sync, not deleted."""
    with transaction.atomic():
        gpu = _lock_gpu(gpu)
        if gpu.instances_used:
            raise Conflict(f"{gpu} has {gpu.instances_used} desktop instance(s) in use; release them first.")
        delete_object(gpu, actor=actor)


def set_host_state(host: Host, state: str, *, actor, reason: str = "") -> Host:
    """Admin action: maintenance (drain: no new desktops, running ones stay) or back online."""
    if state not in (HostState.ONLINE, HostState.MAINTENANCE):
        raise Conflict(f"A host can be put in maintenance or back online, not {state!r}.")
    with transaction.atomic():
        locked = Host.objects.select_for_update().get(pk=host.pk)
        if locked.state == state:
            return locked
        before = locked.state
        locked.state = state
        locked.save(update_fields=["state", "updated_at"])
        audit.record_row(
            f"host.{state}",
            locked,
            actor=actor,
            before={"state": before},
            after={"state": state, **({"reason": reason} if reason else {})},
        )
    return locked


def mark_silent_hosts_offline() -> list[str]:
    cutoff = timezone.now() - timedelta(seconds=settings.PORTAL_HEARTBEAT_TIMEOUT_S)
    names = []
    for host in Host.objects.online().exclude(last_heartbeat__gte=cutoff):
        with transaction.atomic():
            if (
                Host.objects.online()
                .filter(pk=host.pk)
                .exclude(last_heartbeat__gte=cutoff)
                .update(state=HostState.OFFLINE, capacity_version=next_capacity_version())
            ):
                names.append(host.name)
                audit.record_row(
                    "host.offline",
                    host,
                    actor=None,
                    before={"state": HostState.ONLINE},
                    after={"state": HostState.OFFLINE, "reason": f"no heartbeat since {host.last_heartbeat}"},
                )
    return names
