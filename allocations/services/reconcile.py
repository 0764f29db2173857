"""Comparing a host's libvirt reality with the database, and fixing the difference.

Runs on the host's own queue, so it never interleaves with that host's
provision or teardown tasks. Several Host rows can share one libvirt daemon
(the lab's hosts on one ``qemu:///system``), and two deployments (staging and
production) can share a host, so the reconciler acts only on what it can prove
is its own (``owner_of``):

- a domain is this host's only when its metadata names this deployment
  (``PORTAL_DEPLOYMENT_ID``) and this host; then, if its desktop is final or
  unknown, it is destroyed and undefined. A domain whose desktop holds capacity
  on any host is never touched. Portal domains of older versions, without
  deployment and host in their metadata, are left alone and reported;
- an mdev is this host's only when its UUID is the ``mdev_uuid`` of one of this
  deployment's desktops on this host; it is removed when that desktop is final
  and no domain uses it. Unknown unused mdevs are left alone and reported;
- a RUNNING desktop whose domain is gone (or stopped) → FAILED (host lost),
  its capacity and quota returned once (``lifecycle.transition``), its owner told.

Each step is guarded: one failure becomes a problem in the report and the cycle
goes on. Each fix is an audit event; the findings are kept on the Host row
(``last_reconciled_at``, ``reconcile_problems``) for the host's page.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from django.db import transaction
from django.utils import timezone

from allocations.choices import FINAL_STATUSES, HOLDING_STATUSES, DesktopStatus, EndReason
from allocations.exceptions import InvalidTransition
from allocations.models import Desktop
from allocations.services import lifecycle
from allocations.services.hosting import FOREIGN, NOT_PORTAL, OURS, UNOWNED, owner_of
from audit import services as audit
from inventory.drivers.base import DomainInfo, DriverError
from inventory.models import Host
from inventory.services.connect import driver_for

log = logging.getLogger(__name__)

MAX_STORED_PROBLEMS = 50  # kept on the host row for its page; the task logs every one


@dataclass
class ReconcileReport:
    host: str
    orphan_domains: list[str] = field(default_factory=list)
    orphan_mdevs: list[str] = field(default_factory=list)
    lost_desktops: list[int] = field(default_factory=list)
    unowned_domains: list[str] = field(default_factory=list)  # older portal domains, left alone
    problems: list[dict] = field(default_factory=list)  # [{"what": ..., "detail": ...}], in words

    def problem(self, what: str, detail: str) -> None:
        self.problems.append({"what": what, "detail": detail[:500]})

    def as_dict(self) -> dict:
        return asdict(self)


@contextmanager
def _guard(report: ReconcileReport, what: str):
    """One step: whatever goes wrong in it becomes a problem in the report, and the cycle goes on."""
    try:
        yield
    except DriverError as exc:
        report.problem(what, str(exc))
    except Exception as exc:  # noqa: BLE001 — a bug in one step must not hide the others; the log keeps the trace
        log.exception("reconcile %s: %s", report.host, what)
        report.problem(what, f"{type(exc).__name__}: {exc}")


def _audit_fix(host: Host, verb: str, object_type: str, object_id: str, detail: dict) -> None:
    with transaction.atomic():
        audit.record(
            verb, actor=None, object_type=object_type, object_id=object_id, object_repr=host.name, after=detail
        )


def _desktop_id(domain: DomainInfo) -> int | None:
    try:
        return int(domain.metadata.get("desktop", ""))
    except ValueError:
        return None


def _reconcile_domain(host: Host, driver, domain: DomainInfo, report: ReconcileReport) -> None:
    owner = owner_of(domain.metadata, host=host.name)
    if owner in (NOT_PORTAL, FOREIGN):
        return  # not the portal's, or another host's or deployment's: theirs to keep
    desktop_id = _desktop_id(domain)
    active = Desktop.objects.filter(pk=desktop_id, status__in=HOLDING_STATUSES)
    if owner == UNOWNED:
        if desktop_id is None or not active.filter(domain_name=domain.name).exists():
            report.unowned_domains.append(domain.name)
            report.problem(
                f"domain {domain.name}",
                "made by an older portal version (no deployment or host in its metadata), so not provably "
                "this host's; left alone: remove it by hand if nobody uses it",
            )
        return
    if desktop_id is None:
        report.problem(f"domain {domain.name}", "its metadata names no desktop; left alone")
        return
    if active.exists():
        return  # its desktop still holds capacity (here, or on any host): never an orphan
    driver.destroy_domain(domain.name)
    driver.undefine_domain(domain.name)
    report.orphan_domains.append(domain.name)
    _audit_fix(
        host,
        "reconciler.orphan_domain_removed",
        "libvirt.domain",
        domain.name,
        {"desktop": desktop_id, "state": domain.state},
    )


def _reconcile_mdevs(host: Host, driver, report: ReconcileReport) -> None:
    mdevs = driver.list_mdevs()
    # Only this deployment's desktops on this host make an mdev ours; an mdev no row names is someone else's.
    statuses = {
        str(uuid): status
        for uuid, status in Desktop.objects.filter(host=host, mdev_uuid__in=[m.uuid for m in mdevs]).values_list(
            "mdev_uuid", "status"
        )
    }
    for mdev in mdevs:
        with _guard(report, f"mediated device {mdev.uuid}"):
            status = statuses.get(mdev.uuid)
            if status is None:
                if not mdev.domain:
                    report.problem(
                        f"mediated device {mdev.uuid}",
                        f"unused, and no desktop of this portal on {host.name} owns it; left alone",
                    )
                continue
            if status not in FINAL_STATUSES:
                continue  # its desktop is in flight or running
            if mdev.domain:
                report.problem(
                    f"mediated device {mdev.uuid}",
                    f"its desktop has ended but domain {mdev.domain} still uses it; left alone",
                )
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


def _reconcile_running(host: Host, driver, desktop: Desktop, listed: DomainInfo | None, report) -> None:
    name = desktop.domain_name
    if listed is not None and listed.state == "running":
        return
    domain = driver.domain_info(name)  # the listing is a snapshot: look again before judging
    if domain is not None and domain.state == "running":
        return
    if domain is None:
        why = f"Host lost: its virtual machine ({name}) is gone from {host.name}."
    else:
        why = f"Host lost: its virtual machine ({name}) on {host.name} is {domain.state}, not running."
    try:
        lifecycle.transition(desktop.pk, DesktopStatus.FAILED, reason=why, end_reason=EndReason.HOST_LOST)
    except InvalidTransition:
        return  # it moved on (released, stopping) since the listing: nothing is lost
    report.lost_desktops.append(desktop.pk)
    _audit_fix(host, "reconciler.desktop_lost", "allocations.desktop", str(desktop.pk), {"reason": why})
    if domain is not None:
        if owner_of(domain.metadata, host=host.name) != OURS:
            report.problem(
                f"domain {name}",
                "its desktop failed (host lost); the domain is not provably this "
                "host's, so it and its vGPU are left alone",
            )
            return
        driver.destroy_domain(name)
        driver.undefine_domain(name)
    if desktop.mdev_uuid:
        driver.remove_mdev(str(desktop.mdev_uuid))


def _store(host: Host, report: ReconcileReport) -> None:
    problems = report.problems[:MAX_STORED_PROBLEMS]
    if len(report.problems) > MAX_STORED_PROBLEMS:
        problems.append({"what": "…", "detail": f"{len(report.problems) - MAX_STORED_PROBLEMS} more (worker log)"})
    # update(), not save(): the findings change nothing the scheduler reads (no capacity_version bump)
    Host.objects.filter(pk=host.pk).update(last_reconciled_at=timezone.now(), reconcile_problems=problems)


def reconcile_host(host: Host) -> ReconcileReport:
    """Fix what is provably this host's and differs from the database; report the rest. Never raises for
    a single domain, mdev or desktop; the findings are stored on the host."""
    report = ReconcileReport(host=host.name)
    driver = driver_for(host)
    try:
        domains = {d.name: d for d in driver.list_domains()}
    except DriverError as exc:
        report.problem("libvirt", f"cannot list the host's domains, nothing checked: {exc}")
        _store(host, report)
        return report
    for domain in domains.values():
        with _guard(report, f"domain {domain.name}"):
            _reconcile_domain(host, driver, domain, report)
    with _guard(report, "mediated devices"):
        _reconcile_mdevs(host, driver, report)
    running = Desktop.objects.filter(host=host, status=DesktopStatus.RUNNING).exclude(domain_name="")
    for desktop in running:
        with _guard(report, f"desktop {desktop.pk} ({desktop.domain_name})"):
            _reconcile_running(host, driver, desktop, domains.get(desktop.domain_name), report)
    _store(host, report)
    return report
