"""The fleet at a glance, for the inventory page and ``/api/fleet/overview/``: totals (GPUs by mode, free
vGPU instances per profile, boards free, stranded capacity as the placement engine defines it) and the
problems someone should look at (hosts offline or unreachable, reconciler findings, failed desktops,
telemetry errors). Read-only."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from allocations.choices import DesktopStatus
from allocations.models import Desktop
from allocations.placement.capacity import capacity_now
from inventory.models import GPU, Host

FAILED_WINDOW = timedelta(hours=24)  # "recently" failed desktops


def fleet_totals() -> dict:
    gpus_by_mode = dict(GPU.objects.present().values_list("mode").annotate(n=Count("id")).order_by("mode"))
    return {"gpus_by_mode": gpus_by_mode, "gpus": sum(gpus_by_mode.values()), **capacity_now()}


def fleet_problems(now=None) -> list[dict]:
    """What is wrong now, most serious first: each {kind, subject, detail, link}."""
    now = now or timezone.now()
    problems = []
    for host in Host.objects.offline().order_by("name"):
        seen = f"last heartbeat {host.last_heartbeat:%Y-%m-%d %H:%M} UTC" if host.last_heartbeat else "never seen"
        problems.append(_problem("host_offline", host.name, f"Offline: gets no new desktops ({seen}).", host))
    for host in Host.objects.reachable().exclude(last_sync_error="").order_by("name"):
        problems.append(_problem("host_unreachable", host.name, f"Last sync failed: {host.last_sync_error}", host))
    for host in Host.objects.order_by("name"):
        for finding in host.reconcile_problems or []:
            detail = f"{finding.get('what', 'finding')}: {finding.get('detail', '')}".rstrip(": ")
            problems.append(_problem("reconcile", host.name, detail, host, anchor="#reconciler"))
    failed = (
        Desktop.objects.filter(status=DesktopStatus.FAILED, status_changed_at__gte=now - FAILED_WINDOW)
        .select_related("tenant")
        .order_by("-status_changed_at")[:50]
    )
    for desktop in failed:
        problems.append(
            {
                "kind": "desktop_failed",
                "subject": f"{desktop.name} (#{desktop.pk}, {desktop.tenant.name})",
                "detail": desktop.status_reason or "Failed.",
                "link": reverse("desktop-page", args=[desktop.pk]),
                "at": desktop.status_changed_at,
            }
        )
    for host in Host.objects.exclude(telemetry_status="").order_by("name"):
        problems.append(_problem("telemetry", host.name, f"Telemetry: {host.telemetry_status}", host))
    return problems


def _problem(kind: str, subject: str, detail: str, host: Host, anchor: str = "") -> dict:
    return {
        "kind": kind,
        "subject": subject,
        "detail": detail,
        "link": reverse("inventory:host-detail", args=[host.name]) + anchor,
        "at": None,
    }


PROBLEM_LABELS = {
    "host_offline": "Host offline",
    "host_unreachable": "Host unreachable",
    "reconcile": "Reconciler finding",
    "desktop_failed": "Desktop failed",
    "telemetry": "Telemetry error",
}
