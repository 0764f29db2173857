"""Reconciling inventory rows with what a host reports.

``sync_host`` reads the host through its driver (and GPU identities through its
telemetry source), then, in one transaction with the host row locked, upserts
its GPUs and their vGPU types. Drift is recorded, never hidden: a GPU that
vanished is marked ``present=False`` (not deleted: desktops and history point
at it), one that came back is marked present again, and each such change is an
audit event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from audit import services as audit
from inventory.choices import VGPU_MODES, GPUMode, HostState
from inventory.drivers.base import Discovery, DriverError, Passthrough
from inventory.drivers.telemetry import OK, HostTelemetry
from inventory.models import GPU, GPUMdevType, Host, VGPUProfile
from inventory.services.connect import driver_for, telemetry_for


@dataclass
class SyncReport:
    host: str
    discovered: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    reappeared: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unknown_types: list[str] = field(default_factory=list)
    gpus: int = 0
    mdevs: int = 0
    telemetry_status: str = OK

    def summary(self) -> str:
        parts = [f"{self.host}: {self.gpus} GPU(s), {self.mdevs} vGPU instance(s)"]
        for label in ("discovered", "vanished", "reappeared", "updated"):
            names = getattr(self, label)
            if names:
                parts.append(f"{label} {', '.join(names)}")
        if self.unknown_types:
            parts.append(f"types not in the catalog: {', '.join(sorted(set(self.unknown_types)))}")
        if self.telemetry_status != OK:
            parts.append(f"telemetry: {self.telemetry_status}")
        return "; ".join(parts)


def sync_host(host: Host, *, actor=None, driver=None, telemetry=None) -> SyncReport:
    """Read ``host`` and bring its rows in line. Raises DriverError when the host cannot be read
    (after recording the error on the host row)."""
    driver = driver or driver_for(host)
    telemetry = telemetry or telemetry_for(host)
    try:
        discovery = driver.discover()
    except DriverError as exc:
        Host.objects.filter(pk=host.pk).update(last_sync_error=str(exc)[:500], last_sync_at=timezone.now())
        raise
    sample = telemetry.sample(discovery.gpus, discovery.mdevs, discovery.domains)
    return _apply(host.pk, discovery, sample, actor)


def _gpu_fields(gpu, sample: HostTelemetry, profiles_by_name: dict) -> dict:
    identity = {g.pci_address: g for g in sample.gpus if not g.error}
    measured = identity.get(gpu.pci_address)
    board = next((p for p in profiles_by_name.values() if p.board == gpu.model), None)
    fields = {"model": gpu.model}
    if measured and measured.fb_total_mib:
        fields["framebuffer_mib"] = measured.fb_total_mib
    elif board is not None:
        fields["framebuffer_mib"] = board.board_framebuffer_mib
    if measured and measured.uuid:
        fields["uuid"] = measured.uuid
    return fields


@transaction.atomic
def _apply(host_id: int, discovery: Discovery, sample: HostTelemetry, actor) -> SyncReport:
    host = Host.objects.select_for_update().get(pk=host_id)
    # Audit events are written last: the audit chain's head is one locked row, so taking it before
    # the other row locks of this transaction could deadlock with a writer holding those rows.
    events: list[tuple] = []  # (verb, row, before, after)
    report = SyncReport(host=host.name, gpus=len(discovery.gpus), mdevs=len(discovery.mdevs))
    report.telemetry_status = sample.status
    profiles = {p.name: p for p in VGPUProfile.objects.all()}
    rows = {g.pci_address: g for g in GPU.objects.select_for_update().filter(host=host)}
    mdevs_by_gpu: dict[str, set[str]] = {}
    for mdev in discovery.mdevs:
        mdevs_by_gpu.setdefault(mdev.parent_pci, set()).add(mdev.type_id)

    for gpu in discovery.gpus:
        fields = _gpu_fields(gpu, sample, profiles)
        row = rows.get(gpu.pci_address)
        if row is None:
            row = GPU(host=host, pci_address=gpu.pci_address, mode=GPUMode.VGPU, **fields)
            if "framebuffer_mib" not in fields:
                row.framebuffer_mib = 1  # unknown board size until telemetry or the catalog says
            row.full_clean(exclude=["uuid"] if not row.uuid else None)
            row.save()
            report.discovered.append(gpu.pci_address)
            events.append(("gpu.discovered", row, None, audit.snapshot(row)))
        elif _never_synced(row, host):
            # A row made ahead of its first sync (a lab's passthrough GPUs, an admin's): this sync is
            # the first to see it, so it is discovered, not "updated".
            for key, value in fields.items():
                setattr(row, key, value)
            row.present = True
            row.full_clean(exclude=["uuid"] if not row.uuid else None)
            row.save()
            report.discovered.append(gpu.pci_address)
            events.append(("gpu.discovered", row, None, audit.snapshot(row)))
        else:
            before = audit.snapshot(row)
            for key, value in fields.items():
                setattr(row, key, value)
            if not row.present:
                row.present = True
                report.reappeared.append(gpu.pci_address)
            after = audit.snapshot(row)
            if after != before:
                row.save()
                verb = "gpu.reappeared" if gpu.pci_address in report.reappeared else "gpu.updated_by_sync"
                if verb == "gpu.updated_by_sync":
                    report.updated.append(gpu.pci_address)
                events.append(
                    (
                        verb,
                        row,
                        {k: v for k, v in before.items() if after.get(k) != v},
                        {k: v for k, v in after.items() if before.get(k) != v},
                    )
                )
        _sync_types(row, gpu, profiles, report)
        _sync_current_profile(row, gpu, mdevs_by_gpu.get(gpu.pci_address, set()), profiles, events)

    seen = {g.pci_address for g in discovery.gpus}
    for pci, row in rows.items():
        if pci not in seen and row.present:
            row.present = False
            row.save(update_fields=["present", "updated_at"])
            report.vanished.append(pci)
            events.append(("gpu.vanished", row, {"present": True}, {"present": False}))

    host.cpu_cores = discovery.info.cpu_cores
    host.memory_mib = discovery.info.memory_mib
    host.libvirt_version = discovery.info.libvirt_version
    host.last_heartbeat = host.last_sync_at = timezone.now()
    host.last_sync_error = ""
    host.telemetry_status = "" if sample.status == OK else sample.status[:200]
    _sync_passthrough(host, discovery.passthrough, events)
    if host.state == HostState.OFFLINE:
        host.state = HostState.ONLINE  # reachable again; maintenance stays as the admin set it
        events.append(("host.online", host, {"state": HostState.OFFLINE}, {"state": HostState.ONLINE}))
    host.save()
    for verb, obj, before, after in events:
        audit.record_row(verb, obj, actor=actor, before=before, after=after)
    return report


def _never_synced(row: GPU, host: Host) -> bool:
    """Whether no sync of its host has seen this GPU row yet (made before the host's last sync's end)."""
    return host.last_sync_at is None or row.created_at > host.last_sync_at


def _sync_passthrough(host: Host, passthrough: Passthrough, events: list) -> None:
    """Record whether the host can hand whole GPUs to guests (placement reads it); a change is audited."""
    note = passthrough.note[:500]
    if host.passthrough_capable != passthrough.capable:
        events.append(
            (
                "host.passthrough_changed",
                host,
                {"passthrough_capable": host.passthrough_capable, "passthrough_note": host.passthrough_note},
                {"passthrough_capable": passthrough.capable, "passthrough_note": note},
            )
        )
    host.passthrough_capable, host.passthrough_note = passthrough.capable, note


def _sync_types(row: GPU, gpu, profiles: dict, report: SyncReport) -> None:
    existing = {t.type_id: t for t in row.mdev_types.all()}
    for mdev_type in gpu.mdev_types:
        profile = profiles.get(mdev_type.profile_name)
        if profile is None:
            report.unknown_types.append(mdev_type.name)
        elif not profile.mdev_type_id:
            VGPUProfile.objects.filter(pk=profile.pk).update(mdev_type_id=mdev_type.type_id)
        values = {"type_name": mdev_type.name, "profile": profile, "available_instances": mdev_type.available_instances}
        current = existing.pop(mdev_type.type_id, None)
        if current is None:
            GPUMdevType.objects.create(gpu=row, type_id=mdev_type.type_id, **values)
        elif any(getattr(current, k) != v for k, v in values.items()):
            for key, value in values.items():
                setattr(current, key, value)
            current.save()
    if existing:
        GPUMdevType.objects.filter(pk__in=[t.pk for t in existing.values()]).delete()


def _sync_current_profile(row: GPU, gpu, type_ids_in_use: set[str], profiles: dict, events: list) -> None:
    """Keep the profile a board runs in line with the host, without touching claims: while desktops
    hold instances on it (``instances_used``) the scheduler's profile stands. A free board that holds
    vGPU instances (e.g. left by a failed teardown) runs their type until they are removed; a free
    board that holds none runs nothing, so it may take any type again."""
    if row.mode not in VGPU_MODES or row.instances_used:
        return
    profile = None
    if type_ids_in_use:
        names = {t.type_id: t.profile_name for t in gpu.mdev_types}
        profile = profiles.get(names.get(sorted(type_ids_in_use)[0], ""))
    if row.current_profile_id == (profile.pk if profile else None):
        return
    before = row.current_profile.name if row.current_profile_id else None
    row.current_profile = profile
    row.save(update_fields=["current_profile", "updated_at"])
    events.append(
        (
            "gpu.profile_observed",
            row,
            {"current_profile": before},
            {"current_profile": profile.name if profile else None},
        )
    )
