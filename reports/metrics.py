"""GET /metrics: Prometheus text exposition for those who already run Grafana.

By default, whatever the fleet's size (a few hundred KB at 1,200 hosts): hosts by state, boards by
model and how many are busy, per host the aggregates of its boards' latest samples (mean SM and memory
utilization, framebuffer and power summed, hottest board), per tenant its vGPUs' mean SM utilization and
framebuffer, desktops by status, placement failures by reason, provisioning latency (request → running)
over the last hour, open consoles and the bytes they relayed. Each aggregate is one GROUP BY over the
latest-sample table (``inventory.LatestSample``), not a loop over rows.

Per-board series (``portal_gpu_*``) come by default while the fleet has at most
``PORTAL_METRICS_PER_GPU_UP_TO`` boards (512), and on request (``?gpu=1``); per-vGPU series
(``portal_vgpu_*``) only on request (``?vgpu=1``). ``?host=<name>`` gives that host's boards and vGPUs
(a per-host scrape, or a look at one host). A large fleet scrapes per-board figures from an exporter
on each host (dcgm-exporter) instead: docs/monitoring.md.
Scrapers authenticate with ``Authorization: Bearer $PORTAL_METRICS_TOKEN``; without a token
configured, only signed-in platform admins and auditors may read it.
"""

from __future__ import annotations

import hmac
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Avg, CharField, Count, F, Max, OuterRef, Q, Subquery, Sum, UUIDField, Value
from django.db.models.functions import Cast, Replace
from django.http import HttpResponse
from django.utils import timezone

from allocations.choices import DesktopStatus
from allocations.models import Desktop
from consoles.models import ConsoleSession
from inventory.choices import HostState
from inventory.models import GPU, Host, LatestSample, PlacementFailure
from tenancy.roles import sees_everything

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PER_GPU_UP_TO = 512  # boards: up to this many, per-board series come by default

GPU_SERIES = [  # name, field, help, per-host aggregate
    ("portal_gpu_sm_utilization_percent", "sm_util", "GPU SM utilization", "mean"),
    ("portal_gpu_memory_utilization_percent", "mem_util", "GPU memory controller utilization", "mean"),
    ("portal_gpu_framebuffer_used_mib", "fb_used_mib", "GPU framebuffer in use", "sum"),
    ("portal_gpu_temperature_celsius", "temperature_c", "GPU temperature", "max"),
    ("portal_gpu_power_watts", "power_w", "GPU power draw", "sum"),
]
VGPU_SERIES = [
    ("portal_vgpu_sm_utilization_percent", "sm_util", "vGPU SM utilization"),
    ("portal_vgpu_framebuffer_used_mib", "fb_used_mib", "vGPU framebuffer in use"),
]
AGGREGATES = {"mean": Avg, "sum": Sum, "max": Max}


def _escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _line(name: str, labels: dict, value) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {value}" if inner else f"{name} {value}"


def _head(name: str, help_text: str, kind: str = "gauge") -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _num(value) -> str:
    if value is None:
        return "NaN"
    value = round(float(value), 3)
    return str(int(value)) if value.is_integer() else str(value)


def _allowed(request) -> bool:
    token = settings.PORTAL_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:], token):
        return True
    return sees_everything(request.user)


def _latest(*, vgpu: bool, host: Host | None = None):
    """The latest samples still fresh (a board that stopped reporting drops out), boards or vGPUs."""
    recent = timezone.now() - timedelta(seconds=max(60, 6 * settings.PORTAL_SAMPLE_INTERVAL_S))
    rows = LatestSample.objects.filter(sampled_at__gte=recent)
    rows = rows.exclude(series__mdev_uuid="") if vgpu else rows.filter(series__mdev_uuid="")
    return rows.filter(series__gpu__host=host) if host is not None else rows


def _owner_slug():
    """The tenant slug of the desktop whose vGPU a sample's series is, as a subquery (the desktop's uuid
    column is a uuid on PostgreSQL, 32 hex digits on SQLite; the series keeps the dashed text)."""
    mdev = OuterRef("series__mdev_uuid")
    if connection.vendor == "postgresql":
        key = Cast(mdev, UUIDField())
    else:
        key = Replace(mdev, Value("-"), Value(""))
    return Subquery(Desktop.objects.filter(mdev_uuid=key).values("tenant__slug")[:1], output_field=CharField())


def metrics(request):
    if not _allowed(request):
        return HttpResponse("metrics: authentication required\n", status=401, content_type=CONTENT_TYPE)
    host = None
    if request.GET.get("host"):
        host = Host.objects.filter(name=request.GET["host"]).first()
        if host is None:
            return HttpResponse("metrics: no such host\n", status=404, content_type=CONTENT_TYPE)
    per_gpu = host is not None or request.GET.get("gpu") == "1"
    if not per_gpu and request.GET.get("gpu") != "0":
        up_to = getattr(settings, "PORTAL_METRICS_PER_GPU_UP_TO", PER_GPU_UP_TO)
        per_gpu = GPU.objects.present().count() <= up_to
    out = _fleet_lines() + _host_lines(host)
    if per_gpu:
        out += _gpu_lines(host)
    out += _tenant_lines()
    if host is not None or request.GET.get("vgpu") == "1":
        out += _vgpu_lines(host)
    out += _desktop_lines() + _console_lines()
    return HttpResponse("\n".join(out) + "\n", content_type=CONTENT_TYPE)


def _fleet_lines() -> list[str]:
    states = dict(Host.objects.values_list("state").annotate(n=Count("id")).order_by())
    out = _head("portal_hosts", "Hosts by state.")
    out += [_line("portal_hosts", {"state": s.value}, states.get(s.value, 0)) for s in HostState]
    boards = (
        GPU.objects.present()
        .filter(host__in=Host.objects.active())
        .values("model")
        .annotate(n=Count("id"), busy=Count("id", filter=Q(instances_used__gt=0)))
        .order_by("model")
    )
    out += _head("portal_gpus", "GPU boards present on hosts in service, by model; busy: running a desktop.")
    for row in boards:
        out.append(_line("portal_gpus", {"model": row["model"], "busy": "true"}, row["busy"]))
        out.append(_line("portal_gpus", {"model": row["model"], "busy": "false"}, row["n"] - row["busy"]))
    return out


def _host_lines(host: Host | None) -> list[str]:
    """Per host, its boards' latest samples aggregated in one GROUP BY."""
    figures = {field: AGGREGATES[how](field) for _name, field, _help, how in GPU_SERIES}
    rows = (
        _latest(vgpu=False, host=host)
        .values(host_name=F("series__gpu__host__name"))
        .annotate(boards=Count("series"), **figures)
        .order_by("host_name")
    )
    rows = list(rows)
    out = _head("portal_host_gpus_reporting", "Boards of the host with a fresh sample.")
    out += [_line("portal_host_gpus_reporting", {"host": r["host_name"]}, r["boards"]) for r in rows]
    for name, field, help_text, how in GPU_SERIES:
        host_name = name.replace("portal_gpu_", "portal_host_gpu_")
        out += _head(host_name, f"{help_text}, {how} over the host's boards (latest samples).")
        out += [_line(host_name, {"host": r["host_name"]}, _num(r[field])) for r in rows if r[field] is not None]
    return out


def _gpu_lines(host: Host | None) -> list[str]:
    fields = [field for _name, field, _help, _how in GPU_SERIES]
    rows = list(
        _latest(vgpu=False, host=host)
        .order_by("series__gpu__host__name", "series__gpu__pci_address")
        .values_list(
            "series__gpu__host__name", "series__gpu__pci_address", "series__gpu__model", "series__gpu__uuid", *fields
        )
    )
    out = []
    for k, (name, _field, help_text, _how) in enumerate(GPU_SERIES):
        out += _head(name, f"{help_text} (latest sample).")
        for host_name, pci, model, uuid, *values in rows:
            if values[k] is not None:
                labels = {"host": host_name, "pci": pci, "model": model, "uuid": uuid or ""}
                out.append(_line(name, labels, values[k]))
    return out


def _tenant_lines() -> list[str]:
    """Per tenant, its vGPUs' latest samples (one GROUP BY on the owning desktop's tenant)."""
    rows = list(
        _latest(vgpu=True)
        .annotate(tenant=_owner_slug())
        .values("tenant")
        .annotate(n=Count("series"), sm=Avg("sm_util"), fb=Sum("fb_used_mib"))
        .order_by("tenant")
    )
    out = _head("portal_tenant_vgpus_reporting", "vGPU instances of the tenant's desktops with a fresh sample.")
    out += [_line("portal_tenant_vgpus_reporting", {"tenant": r["tenant"] or ""}, r["n"]) for r in rows]
    name = "portal_tenant_vgpu_sm_utilization_percent"
    out += _head(name, "vGPU SM utilization, mean over the tenant's vGPUs (latest samples).")
    out += [_line(name, {"tenant": r["tenant"] or ""}, _num(r["sm"])) for r in rows]
    name = "portal_tenant_vgpu_framebuffer_used_mib"
    out += _head(name, "vGPU framebuffer in use, summed over the tenant's vGPUs (latest samples).")
    out += [_line(name, {"tenant": r["tenant"] or ""}, _num(r["fb"])) for r in rows]
    return out


def _vgpu_lines(host: Host | None) -> list[str]:
    rows = list(
        _latest(vgpu=True, host=host)
        .annotate(tenant=_owner_slug())
        .order_by("series__gpu__host__name", "series__mdev_uuid")
        .values_list(
            "series__gpu__host__name",
            "series__gpu__pci_address",
            "series__mdev_uuid",
            "tenant",
            "sm_util",
            "fb_used_mib",
        )
    )
    out = []
    for k, (name, _field, help_text) in enumerate(VGPU_SERIES):
        out += _head(name, f"{help_text} (latest sample).")
        for host_name, pci, mdev, tenant, *values in rows:
            labels = {"host": host_name, "pci": pci, "mdev_uuid": mdev, "tenant": tenant or ""}
            out.append(_line(name, labels, values[k]))
    return out


def _desktop_lines() -> list[str]:
    by_status = dict(Desktop.objects.values_list("status").annotate(n=Count("id")).order_by())
    out = _head("portal_desktops", "Desktops by status.")
    out += [_line("portal_desktops", {"status": s.value}, by_status.get(s.value, 0)) for s in DesktopStatus]
    out += _head(
        "portal_placement_failures_total", "Desktop requests refused for lack of capacity, by reason.", "counter"
    )
    out += [
        _line("portal_placement_failures_total", {"reason": f.reason}, f.count)
        for f in PlacementFailure.objects.order_by("reason")
    ]
    hour_ago = timezone.now() - timedelta(hours=1)
    durations = sorted(
        (started - requested).total_seconds()
        for started, requested in Desktop.objects.filter(started_at__gte=hour_ago).values_list(
            "started_at", "requested_at"
        )
    )
    name = "portal_desktop_provision_seconds"
    out += _head(name, "Request to running, desktops started in the last hour.", "summary")
    for q in (0.5, 0.95):
        value = durations[min(len(durations) - 1, round(q * (len(durations) - 1)))] if durations else "NaN"
        out.append(_line(name, {"quantile": q}, value))
    out.append(_line(f"{name}_sum", {}, round(sum(durations), 3)))
    out.append(_line(f"{name}_count", {}, len(durations)))
    return out


def _console_lines() -> list[str]:
    """Open consoles (not closed, and alive within the last minute: a console's process writes its
    ``last_seen`` every 10 s) and the bytes relayed by every console so far."""
    alive = timezone.now() - timedelta(seconds=60)
    open_now = ConsoleSession.objects.open().filter(last_seen__gte=alive).count()
    totals = ConsoleSession.objects.aggregate(to_guest=Sum("bytes_to_guest"), from_guest=Sum("bytes_from_guest"))
    out = ["# HELP portal_consoles_open Consoles open now.", "# TYPE portal_consoles_open gauge"]
    out.append(_line("portal_consoles_open", {}, open_now))
    name = "portal_console_bytes_total"
    out += [f"# HELP {name} Bytes relayed between browsers and guests' screens.", f"# TYPE {name} counter"]
    out += [_line(name, {"direction": d}, totals[d] or 0) for d in ("to_guest", "from_guest")]
    return out
