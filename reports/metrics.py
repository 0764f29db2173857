"""GET /metrics: Prometheus text exposition for those who already run Grafana.

GPU and vGPU utilization (latest sample per board/instance), desktops by status, placement
failures by reason, provisioning latency (request → running) over the last hour, open consoles and
the bytes they relayed.
Scrapers authenticate with ``Authorization: Bearer $PORTAL_METRICS_TOKEN``; without a token
configured, only signed-in platform admins and auditors may read it.
"""

from __future__ import annotations

import hmac
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Max, Sum
from django.http import HttpResponse
from django.utils import timezone

from allocations.choices import DesktopStatus
from allocations.models import Desktop
from consoles.models import ConsoleSession
from inventory.models import PlacementFailure, SampleResolution, UtilizationSample
from tenancy.roles import sees_everything

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _line(name: str, labels: dict, value) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {value}" if inner else f"{name} {value}"


def _allowed(request) -> bool:
    token = settings.PORTAL_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:], token):
        return True
    return sees_everything(request.user)


def _latest_samples():
    recent = timezone.now() - timedelta(seconds=max(60, 6 * settings.PORTAL_SAMPLE_INTERVAL_S))
    latest = (
        UtilizationSample.objects.filter(resolution=SampleResolution.RAW, sampled_at__gte=recent)
        .values("gpu_id", "mdev_uuid")
        .annotate(t=Max("sampled_at"))
        .order_by()
    )
    keys = {(r["gpu_id"], r["mdev_uuid"], r["t"]) for r in latest}
    if not keys:
        return []
    rows = UtilizationSample.objects.filter(
        resolution=SampleResolution.RAW, sampled_at__in={k[2] for k in keys}
    ).select_related("gpu__host")
    return [r for r in rows if (r.gpu_id, r.mdev_uuid, r.sampled_at) in keys]


def metrics(request):
    if not _allowed(request):
        return HttpResponse("metrics: authentication required\n", status=401, content_type=CONTENT_TYPE)
    out = []
    gpu_series = [
        ("portal_gpu_sm_utilization_percent", "sm_util", "GPU SM utilization"),
        ("portal_gpu_memory_utilization_percent", "mem_util", "GPU memory controller utilization"),
        ("portal_gpu_framebuffer_used_mib", "fb_used_mib", "GPU framebuffer in use"),
        ("portal_gpu_temperature_celsius", "temperature_c", "GPU temperature"),
        ("portal_gpu_power_watts", "power_w", "GPU power draw"),
    ]
    samples = _latest_samples()
    boards = [s for s in samples if not s.mdev_uuid]
    vgpus = [s for s in samples if s.mdev_uuid]
    for name, field, help_text in gpu_series:
        out += [f"# HELP {name} {help_text} (latest sample).", f"# TYPE {name} gauge"]
        for s in boards:
            value = getattr(s, field)
            if value is not None:
                labels = {
                    "host": s.gpu.host.name,
                    "pci": s.gpu.pci_address,
                    "model": s.gpu.model,
                    "uuid": s.gpu.uuid or "",
                }
                out.append(_line(name, labels, value))
    owners = dict(
        Desktop.objects.filter(mdev_uuid__in=[s.mdev_uuid for s in vgpus]).values_list("mdev_uuid", "tenant__slug")
    )
    owners = {str(k): v for k, v in owners.items()}
    for name, field, help_text in [
        ("portal_vgpu_sm_utilization_percent", "sm_util", "vGPU SM utilization"),
        ("portal_vgpu_framebuffer_used_mib", "fb_used_mib", "vGPU framebuffer in use"),
    ]:
        out += [f"# HELP {name} {help_text} (latest sample).", f"# TYPE {name} gauge"]
        for s in vgpus:
            labels = {
                "host": s.gpu.host.name,
                "pci": s.gpu.pci_address,
                "mdev_uuid": s.mdev_uuid,
                "tenant": owners.get(s.mdev_uuid, ""),
            }
            out.append(_line(name, labels, getattr(s, field)))

    by_status = dict(Desktop.objects.values_list("status").annotate(n=Count("id")).order_by())
    out += ["# HELP portal_desktops Desktops by status.", "# TYPE portal_desktops gauge"]
    out += [_line("portal_desktops", {"status": s.value}, by_status.get(s.value, 0)) for s in DesktopStatus]

    out += [
        "# HELP portal_placement_failures_total Desktop requests refused for lack of capacity, by reason.",
        "# TYPE portal_placement_failures_total counter",
    ]
    out += [
        _line("portal_placement_failures_total", {"reason": f.reason}, f.count)
        for f in PlacementFailure.objects.order_by("reason")
    ]

    hour_ago = timezone.now() - timedelta(hours=1)
    durations = sorted(
        (d.started_at - d.requested_at).total_seconds()
        for d in Desktop.objects.filter(started_at__gte=hour_ago).only("started_at", "requested_at")
    )
    name = "portal_desktop_provision_seconds"
    out += [f"# HELP {name} Request to running, desktops started in the last hour.", f"# TYPE {name} summary"]
    for q in (0.5, 0.95):
        value = durations[min(len(durations) - 1, round(q * (len(durations) - 1)))] if durations else "NaN"
        out.append(_line(name, {"quantile": q}, value))
    out.append(_line(f"{name}_sum", {}, round(sum(durations), 3)))
    out.append(_line(f"{name}_count", {}, len(durations)))
    out += _console_lines()
    return HttpResponse("\n".join(out) + "\n", content_type=CONTENT_TYPE)


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
