"""Admin changes to hosts and GPUs. Each is one transaction with its audit event."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from core.errors import Conflict
from core.writes import create_object, delete_object, update_object
from inventory.choices import HostState, TelemetrySource
from inventory.drivers.base import DriverError
from inventory.models import GPU, Host
from inventory.querysets import next_capacity_version
from inventory.services.connect import lab_xml_for
from inventory.services.probe import probe_host
from inventory.services.sync import sync_host


def create_host(data: dict, *, actor) -> Host:
    data = {"lab_xml": lab_xml_for(data.get("libvirt_uri", "")), **data}
    return create_object(Host(**data), actor=actor)


def register_host(data: dict, *, actor) -> tuple[Host, str]:
    """Register a host by its libvirt URI and read it at once (``sync_host``). Refused (409, in words,
    nothing saved) when the URI does not answer. Returns the host and what its first sync found, or why
    it did not finish (the host is then kept, with the error on its row, like any failed sync)."""
    probed = probe_host(data["libvirt_uri"], data.get("telemetry_source", TelemetrySource.NVML))
    if not probed.ok:
        raise Conflict(f"{probed.error} Nothing was saved.")
    host = create_host(data, actor=actor)
    try:
        summary = sync_host(host, actor=actor).summary()
    except DriverError as exc:
        summary = f"registered, but its first sync failed: {exc}"
    host.refresh_from_db()
    return host, summary


def update_host(host: Host, changes: dict, *, actor) -> Host:
    """A plain edit; a change of ``state`` goes through the rules of ``set_host_state``/``retire_host``."""
    changes = dict(changes)
    state = changes.pop("state", None)
    if state is not None and state != host.state:
        if state == HostState.RETIRED:
            host = retire_host(host, actor=actor)
        else:
            host = set_host_state(host, state, actor=actor)
    return update_object(host, changes, actor=actor) if changes else host


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


def _lock_in_service(host: Host) -> Host:
    locked = Host.objects.select_for_update().get(pk=host.pk)
    if locked.state == HostState.RETIRED:
        raise Conflict(f"{locked.name} is retired: it stays out of service, kept for its history.")
    return locked


def set_host_state(host: Host, state: str, *, actor, reason: str = "") -> Host:
    """Admin action: maintenance (no new desktops, running ones stay; ``reason`` is shown to their owners)
    or back online (which ends a drain's notice on the host; desktops already told keep their stop time)."""
    if state not in (HostState.ONLINE, HostState.MAINTENANCE):
        raise Conflict(f"A host can be put in maintenance or back online, not {state!r}.")
    reason = reason.strip()[:500]
    with transaction.atomic():
        locked = _lock_in_service(host)
        if locked.state == state and (
            state != HostState.MAINTENANCE or not reason or reason == locked.maintenance_reason
        ):
            return locked
        before = {"state": locked.state, **({"reason": locked.maintenance_reason} if locked.maintenance_reason else {})}
        if state == HostState.MAINTENANCE:
            locked.maintenance_since = locked.maintenance_since or timezone.now()
            locked.maintenance_reason = reason
        else:
            locked.maintenance_since, locked.maintenance_reason, locked.drain_stop_at = None, "", None
        locked.state = state
        locked.save(update_fields=["state", "maintenance_reason", "maintenance_since", "drain_stop_at", "updated_at"])
        audit.record_row(
            f"host.{state}",
            locked,
            actor=actor,
            before=before,
            after={"state": state, **({"reason": reason} if reason else {})},
        )
    return locked


def start_drain(host: Host, *, reason: str, stop_at, actor) -> Host:
    """The host's side of a force-drain (``allocations.services.drain`` tells its desktops): maintenance
    with ``reason``, and the time its running desktops stop. Audited as ``host.drain_started``."""
    with transaction.atomic():
        locked = _lock_in_service(host)
        before = {"state": locked.state}
        locked.state = HostState.MAINTENANCE
        locked.maintenance_since = locked.maintenance_since or timezone.now()
        locked.maintenance_reason, locked.drain_stop_at = reason[:500], stop_at
        locked.save(update_fields=["state", "maintenance_reason", "maintenance_since", "drain_stop_at", "updated_at"])
        audit.record_row(
            "host.drain_started",
            locked,
            actor=actor,
            before=before,
            after={"state": HostState.MAINTENANCE, "reason": locked.maintenance_reason, "stop_at": stop_at},
        )
    return locked


def retire_host(host: Host, *, actor) -> Host:
    """Take a host out of service for good: it is kept (its desktops' history points at it), never
    placed on, synced or listed among active hosts. Refused (409) while any desktop holds it."""
    with transaction.atomic():
        locked = Host.objects.select_for_update().get(pk=host.pk)  # claims lock the host first: no race
        if locked.state == HostState.RETIRED:
            return locked
        # Desktops hold their host until they end (``holds_capacity``); read through the reverse
        # relation, as inventory does not import allocations.
        holding = locked.desktops.filter(holds_capacity=True).count()
        if holding:
            raise Conflict(
                f"{locked.name} still holds {holding} desktop{'s' if holding != 1 else ''} (running or in flight); "
                "drain it and wait until they have ended, then retire it.",
                details={"desktops": holding},
            )
        before = {"state": locked.state}
        locked.state, locked.retired_at = HostState.RETIRED, timezone.now()
        locked.drain_stop_at = None
        locked.save(update_fields=["state", "retired_at", "drain_stop_at", "updated_at"])
        audit.record_row("host.retired", locked, actor=actor, before=before, after={"state": HostState.RETIRED})
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
