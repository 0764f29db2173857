"""Comparing a host's libvirt reality with the database, and fixing the difference.

Runs on the host's own queue, so it never interleaves with that host's
provision or teardown tasks. It only touches domains the portal made (they
carry our metadata) and mediated devices no live desktop owns:

- a portal domain whose desktop is final or unknown → destroyed and undefined;
- an mdev that no domain uses and no desktop in flight owns → removed;
- a RUNNING desktop whose domain is gone → FAILED (host-lost), capacity freed.
Each fix is an audit event.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from django.db import transaction

from allocations.choices import HOLDING_STATUSES, DesktopStatus, EndReason
from allocations.exceptions import InvalidTransition
from allocations.models import Desktop
from allocations.services import lifecycle
from audit import services as audit
from inventory.models import Host
from inventory.services.connect import driver_for


@dataclass
class ReconcileReport:
    host: str
    orphan_domains: list[str] = field(default_factory=list)
    orphan_mdevs: list[str] = field(default_factory=list)
    lost_desktops: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _audit_fix(host: Host, verb: str, object_type: str, object_id: str, detail: dict) -> None:
    with transaction.atomic():
        audit.record(
            verb, actor=None, object_type=object_type, object_id=object_id, object_repr=host.name, after=detail
        )


def reconcile_host(host: Host) -> ReconcileReport:
    driver = driver_for(host)
    report = ReconcileReport(host=host.name)
    domains = {d.name: d for d in driver.list_domains()}
    holding = list(Desktop.objects.filter(host=host, status__in=HOLDING_STATUSES).select_related("tenant"))
    live = {d.domain_name: d for d in holding if d.domain_name}  # a domain is named when its build starts

    for name, domain in domains.items():
        if "desktop" not in domain.metadata or name in live:
            continue  # not ours, or still wanted
        driver.destroy_domain(name)
        driver.undefine_domain(name)
        report.orphan_domains.append(name)
        _audit_fix(
            host,
            "reconciler.orphan_domain_removed",
            "libvirt.domain",
            name,
            {"desktop": domain.metadata.get("desktop"), "state": domain.state},
        )

    owned = {str(d.mdev_uuid) for d in holding if d.mdev_uuid}
    for mdev in driver.list_mdevs():
        if mdev.domain or mdev.uuid in owned:
            continue
        driver.remove_mdev(mdev.uuid)
        report.orphan_mdevs.append(mdev.uuid)
        _audit_fix(
            host,
            "reconciler.orphan_mdev_removed",
            "libvirt.mdev",
            mdev.uuid,
            {"type_id": mdev.type_id, "gpu": mdev.parent_pci},
        )

    for name, desktop in live.items():
        if desktop.status == DesktopStatus.RUNNING and (name not in domains or domains[name].state != "running"):
            why = "its domain is gone from the host" if name not in domains else f"its domain is {domains[name].state}"
            try:
                lifecycle.transition(desktop.pk, DesktopStatus.FAILED, reason=why, end_reason=EndReason.HOST_LOST)
            except InvalidTransition:
                continue
            if name in domains:
                driver.destroy_domain(name)
                driver.undefine_domain(name)
            if desktop.mdev_uuid:
                driver.remove_mdev(str(desktop.mdev_uuid))
            report.lost_desktops.append(desktop.pk)
    return report
