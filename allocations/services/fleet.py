"""The fleet at a glance, for the inventory page and ``/api/fleet/overview/``: totals (GPUs by mode, free
vGPU instances per profile, boards free, stranded capacity as the placement engine defines it) and the
problems someone should look at (hosts offline or unreachable, reconciler findings, failed desktops,
telemetry errors). Read-only.

At a fleet of a thousand hosts the page shows aggregates (hosts by state, boards by model with how many
are busy: ``fleet_summary``, one GROUP BY each) and one page of host rows at a time (``host_page``:
search, filter by model, state or tenant), the problems capped with their count; a host's boards are
on its own page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.core.paginator import Paginator
from django.db.models import Count, Prefetch, Q, Sum
from django.urls import reverse
from django.utils import timezone

from allocations.choices import DesktopStatus
from allocations.models import Desktop
from allocations.placement.capacity import capacity_now
from inventory.choices import HostState
from inventory.models import GPU, Host
from tenancy.models import Tenant

FAILED_WINDOW = timedelta(hours=24)  # "recently" failed desktops
HOSTS_PER_PAGE = 25  # host rows (with their GPU tiles) per page of the fleet overview
MOST_HOSTS_PER_PAGE = 100
PROBLEMS_SHOWN = 50  # the page lists this many problems and says how many more there are
STRANDED_SHOWN = 25  # stranded boards listed one by one; the rest are in the per-model, per-reason counts


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
    for host in Host.objects.exclude(reconcile_problems=[]).order_by("name"):
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


def fleet_summary() -> dict:
    """What the fleet is made of, in two GROUP BYs: hosts in service by state, and per board model the
    hosts, boards (present, on hosts in service), boards busy (running at least one desktop) and vGPU
    instances in use. The heat of a model is its busy share."""
    states = dict(Host.objects.active().values_list("state").annotate(n=Count("id")).order_by())
    by_state = [{"state": s.value, "label": s.label, "hosts": states.get(s.value, 0)} for s in HostState if s in states]
    rows = (
        GPU.objects.present()
        .filter(host__in=Host.objects.active())
        .values("model")
        .annotate(
            hosts=Count("host", distinct=True),
            gpus=Count("id"),
            busy=Count("id", filter=Q(instances_used__gt=0)),
            instances=Sum("instances_used"),
        )
        .order_by("model")
    )
    models = []
    for row in rows:
        share = row["busy"] / row["gpus"] if row["gpus"] else 0.0
        models.append({**row, "instances": row["instances"] or 0, "busy_pct": round(100 * share)})
    return {"by_state": by_state, "hosts": sum(states.values()), "models": models}


@dataclass(frozen=True)
class HostFilter:
    """The overview's host filters, read from the query string (unknown values are ignored, not errors:
    a shared link with a model that is gone shows every host)."""

    q: str = ""
    model: str = ""
    state: str = ""
    tenant: str = ""  # slug: hosts running a desktop of that tenant

    @classmethod
    def from_query(cls, params) -> HostFilter:
        state = params.get("state", "")
        return cls(
            q=(params.get("q") or "").strip()[:100],
            model=(params.get("model") or "").strip()[:40],
            state=state if state in HostState.values and state != HostState.RETIRED else "",
            tenant=(params.get("tenant") or "").strip()[:100],
        )

    @property
    def active(self) -> bool:
        return bool(self.q or self.model or self.state or self.tenant)

    def apply(self, hosts):
        if self.q:
            hosts = hosts.filter(name__icontains=self.q)
        if self.state:
            hosts = hosts.filter(state=self.state)
        if self.model:
            hosts = hosts.filter(pk__in=GPU.objects.filter(model=self.model).values("host_id"))
        if self.tenant:
            holding = Desktop.objects.holding_capacity().filter(tenant__slug=self.tenant).values("host_id")
            hosts = hosts.filter(pk__in=holding)
        return hosts


def host_page(params, *, with_gpus: bool = True):
    """One page of hosts in service matching the filters in ``params`` (q, model, state, tenant; page,
    per_page), by name, each with its GPUs when ``with_gpus``: a COUNT, the page's rows and their GPUs,
    however large the fleet."""
    filters = HostFilter.from_query(params)
    hosts = filters.apply(Host.objects.active()).order_by("name")
    if with_gpus:
        gpus = GPU.objects.select_related("current_profile").order_by("pci_address")
        hosts = hosts.prefetch_related(Prefetch("gpus", queryset=gpus))
    try:
        per_page = min(max(int(params.get("per_page", HOSTS_PER_PAGE)), 1), MOST_HOSTS_PER_PAGE)
    except ValueError:
        per_page = HOSTS_PER_PAGE
    page = Paginator(hosts, per_page).get_page(params.get("page"))
    return page, filters


def filter_choices() -> dict:
    """What the filters offer: board models present and tenants (by name)."""
    return {
        "models": list(GPU.objects.values_list("model", flat=True).distinct().order_by("model")),
        "tenants": list(Tenant.objects.order_by("name").values_list("slug", "name")),
        "states": [(s.value, s.label) for s in HostState if s != HostState.RETIRED],
    }
