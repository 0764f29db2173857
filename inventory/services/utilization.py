"""Sampling GPU utilization, keeping it (raw for hours, minute averages for weeks) and pushing it live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Avg, Max
from django.db.models.functions import TruncMinute
from django.utils import timezone

from core import live
from inventory.drivers.telemetry import OK, HostTelemetry
from inventory.models import GPU, Host, SampleResolution, UtilizationSample
from inventory.services.connect import driver_for, telemetry_for

_FIELDS = (
    "sm_util",
    "mem_util",
    "fb_used_mib",
    "fb_total_mib",
    "temperature_c",
    "power_w",
    "encoder_util",
    "decoder_util",
)


def sample_host(host: Host) -> HostTelemetry:
    """Read the host's telemetry now, store it and publish it. Raises DriverError if libvirt cannot be read."""
    discovery = driver_for(host).discover()
    sample = telemetry_for(host).sample(discovery.gpus, discovery.mdevs, discovery.domains)
    record_sample(host, sample)
    return sample


@transaction.atomic
def record_sample(host: Host, sample: HostTelemetry) -> int:
    status = "" if sample.status == OK else sample.status[:200]
    Host.objects.filter(pk=host.pk).exclude(telemetry_status=status).update(telemetry_status=status)
    if sample.status != OK:
        return 0
    at = datetime.fromtimestamp(sample.sampled_at, tz=UTC)
    gpus = {g.pci_address: g for g in GPU.objects.filter(host=host, present=True)}
    rows, gpu_events = [], []
    for reading in sample.gpus:
        gpu = gpus.get(reading.pci_address)
        if gpu is None or reading.error:
            continue
        rows.append(UtilizationSample(gpu=gpu, sampled_at=at, **{f: getattr(reading, f) for f in _FIELDS}))
        gpu_events.append({"gpu": gpu.pk, "pci": gpu.pci_address, **{f: getattr(reading, f) for f in _FIELDS}})
        for vgpu in reading.vgpus:
            rows.append(
                UtilizationSample(
                    gpu=gpu,
                    mdev_uuid=vgpu.mdev_uuid,
                    sampled_at=at,
                    sm_util=vgpu.sm_util,
                    mem_util=vgpu.mem_util,
                    fb_used_mib=vgpu.fb_used_mib,
                    encoder_util=vgpu.encoder_util,
                    decoder_util=vgpu.decoder_util,
                )
            )
            live.publish_on_commit(
                [live.vgpu_group(vgpu.mdev_uuid)],
                "vgpu.utilization",
                {
                    "mdev_uuid": vgpu.mdev_uuid,
                    "t": at.isoformat(),
                    "sm_util": vgpu.sm_util,
                    "fb_used_mib": vgpu.fb_used_mib,
                    "sampled_at": sample.sampled_at,
                },
            )
    UtilizationSample.objects.bulk_create(rows)
    live.publish_on_commit(
        [live.host_group(host.pk)],
        "host.utilization",
        {"host": host.pk, "name": host.name, "t": at.isoformat(), "sampled_at": sample.sampled_at, "gpus": gpu_events},
    )
    return len(rows)


def rollup(now: datetime | None = None) -> int:
    """Average every complete minute of raw samples into one minute row per GPU/vGPU (idempotent)."""
    now = now or timezone.now()
    end = now.replace(second=0, microsecond=0)
    last = UtilizationSample.objects.filter(resolution=SampleResolution.MINUTE).aggregate(t=Max("sampled_at"))["t"]
    start = last + timedelta(minutes=1) if last else end - timedelta(hours=settings.PORTAL_RAW_RETENTION_H)
    groups = (
        UtilizationSample.objects.filter(resolution=SampleResolution.RAW, sampled_at__gte=start, sampled_at__lt=end)
        .annotate(minute=TruncMinute("sampled_at"))
        .values("gpu_id", "mdev_uuid", "minute")
        .annotate(**{f: Avg(f) for f in _FIELDS})
        .order_by()
    )
    rows = [
        UtilizationSample(
            gpu_id=g["gpu_id"],
            mdev_uuid=g["mdev_uuid"],
            resolution=SampleResolution.MINUTE,
            sampled_at=g["minute"],
            **{f: (round(g[f], 2) if f != "fb_used_mib" else int(g[f])) if g[f] is not None else None for f in _FIELDS},
        )
        for g in groups
    ]
    UtilizationSample.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def prune(now: datetime | None = None) -> dict:
    now = now or timezone.now()
    raw = UtilizationSample.objects.filter(
        resolution=SampleResolution.RAW, sampled_at__lt=now - timedelta(hours=settings.PORTAL_RAW_RETENTION_H)
    ).delete()[0]
    minute = UtilizationSample.objects.filter(
        resolution=SampleResolution.MINUTE, sampled_at__lt=now - timedelta(days=settings.PORTAL_MINUTE_RETENTION_D)
    ).delete()[0]
    return {"raw": raw, "minute": minute}


def history(gpu_id: int, *, mdev_uuid: str = "", since: datetime) -> list[dict]:
    """Samples for a chart: raw where they are kept, minute averages before that."""
    raw_from = timezone.now() - timedelta(hours=settings.PORTAL_RAW_RETENTION_H)
    base = UtilizationSample.objects.filter(gpu_id=gpu_id, mdev_uuid=mdev_uuid, sampled_at__gte=since)
    older = base.filter(resolution=SampleResolution.MINUTE, sampled_at__lt=raw_from)
    recent = base.filter(resolution=SampleResolution.RAW, sampled_at__gte=raw_from)
    return [
        {"t": s.sampled_at.timestamp(), "sm_util": s.sm_util, "fb_used_mib": s.fb_used_mib}
        for s in [*older.order_by("sampled_at"), *recent.order_by("sampled_at")]
    ]


def publish_fleet(now: datetime | None = None) -> int:
    """One ``fleet.utilization`` event for every GPU's latest sample, to the operators' dashboards.

    Hosts sample independently; sending each host's sample to every dashboard costs one websocket
    message per host per dashboard, which one server process cannot keep up with for a large fleet.
    This batches them: one message per interval, compact rows ``[gpu id, SM %, FB used MiB, FB total
    MiB, °C]``, ``sampled_at`` the oldest sample in it (so staleness is not understated)."""
    now = now or timezone.now()
    since = now - timedelta(seconds=2 * settings.PORTAL_SAMPLE_INTERVAL_S)
    latest = (
        UtilizationSample.objects.filter(resolution=SampleResolution.RAW, mdev_uuid="", sampled_at__gte=since)
        .values("gpu_id")
        .annotate(t=Max("sampled_at"))
        .order_by()
    )
    wanted = {(row["gpu_id"], row["t"]) for row in latest}
    if not wanted:
        return 0
    rows, oldest = [], None
    for s in UtilizationSample.objects.filter(
        resolution=SampleResolution.RAW, mdev_uuid="", sampled_at__in={t for _, t in wanted}
    ).only("gpu_id", "sampled_at", "sm_util", "fb_used_mib", "fb_total_mib", "temperature_c"):
        if (s.gpu_id, s.sampled_at) in wanted:
            rows.append([s.gpu_id, s.sm_util, s.fb_used_mib, s.fb_total_mib, s.temperature_c])
            oldest = s.sampled_at if oldest is None or s.sampled_at < oldest else oldest
    live.publish(live.OPERATORS, "fleet.utilization", {"sampled_at": oldest.timestamp(), "gpus": rows})
    return len(rows)
