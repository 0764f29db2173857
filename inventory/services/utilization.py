"""Sampling GPU utilization, keeping it (raw for hours, minute averages for weeks) and pushing it live.

Per host and round ingest costs a handful of statements and ONE channel-layer publish: the host's
``host.utilization`` event (boards and vGPUs) to ``host.<id>``, which the live consumer filters, so a
vGPU's figures reach only its desktop's owner (and operators watching that host). Storage is compact
(``inventory.models.RawSample``/``MinuteBlock``, ``services.sample_storage``): raw rows keyed by a
4-byte series id, minute averages packed one row per series and hour, partitions dropped for
retention on PostgreSQL.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Avg
from django.db.models.functions import TruncMinute
from django.utils import timezone

from core import live
from inventory.drivers.telemetry import OK, HostTelemetry
from inventory.models import GPU, Host, LatestSample, MinuteBlock, RawSample, RollupWatermark, SampleSeries
from inventory.services import sample_storage as storage
from inventory.services.connect import driver_for, telemetry_for

_FIELDS = storage.BOARD_FIELDS
#: Rollup waits this long after an hour ends, so a round that was late still lands in it.
ROLLUP_GRACE = timedelta(minutes=2)


def sample_host(host: Host) -> HostTelemetry:
    """Read the host's telemetry now, store it and publish it. Raises DriverError if libvirt cannot be read."""
    discovery = driver_for(host).discover()
    sample = telemetry_for(host).sample(discovery.gpus, discovery.mdevs, discovery.domains)
    record_sample(host, sample)
    return sample


def _series_for(host: Host, wanted: set[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """The series key of each (GPU, mdev uuid) read on this host, made for the ones new."""
    rows = SampleSeries.objects.filter(gpu__host=host).values_list("pk", "gpu_id", "mdev_uuid")
    known = {(g, m): pk for pk, g, m in rows}
    missing = wanted - known.keys()
    if missing:
        new = [SampleSeries(gpu_id=g, mdev_uuid=m) for g, m in missing]
        SampleSeries.objects.bulk_create(new, ignore_conflicts=True)
        return _series_for(host, set())
    return known


def _insert_raw(rows: list[RawSample], at: datetime) -> None:
    """Partitions are made ahead by the rollup; a sample outside them (a host's clock far off, beat stopped
    for a day) makes its hour's partition rather than failing the round."""
    if not storage.partitioned():
        RawSample.objects.bulk_create(rows)
        return
    try:
        with transaction.atomic():
            RawSample.objects.bulk_create(rows)
    except DatabaseError as exc:
        if "no partition" not in str(exc):
            raise
        storage.ensure_partitions(at, raw_back_h=0)
        RawSample.objects.bulk_create(rows)


@transaction.atomic
def record_sample(host: Host, sample: HostTelemetry) -> int:
    """Store one round of a host's telemetry (raw rows, the latest per series) and publish it once."""
    status = "" if sample.status == OK else sample.status[:200]
    Host.objects.filter(pk=host.pk).exclude(telemetry_status=status).update(telemetry_status=status)
    if sample.status != OK:
        return 0
    at = datetime.fromtimestamp(sample.sampled_at, tz=UTC)
    gpus = dict(GPU.objects.filter(host=host, present=True).values_list("pci_address", "pk"))
    readings, gpu_events, vgpu_events = [], [], []
    for reading in sample.gpus:
        gpu = gpus.get(reading.pci_address)
        if gpu is None or reading.error:
            continue
        figures = {f: getattr(reading, f) for f in _FIELDS}
        readings.append((gpu, "", figures))
        gpu_events.append({"gpu": gpu, "pci": reading.pci_address, **figures})
        for vgpu in reading.vgpus:
            figures = {f: getattr(vgpu, f) for f in storage.VGPU_FIELDS}
            readings.append((gpu, vgpu.mdev_uuid, figures))
            vgpu_events.append([vgpu.mdev_uuid, vgpu.sm_util, vgpu.fb_used_mib])
    if not readings:
        return 0
    series = _series_for(host, {(g, m) for g, m, _ in readings})
    _insert_raw([RawSample(series_id=series[g, m], sampled_at=at, **f) for g, m, f in readings], at)
    LatestSample.objects.bulk_create(
        [LatestSample(series_id=series[g, m], sampled_at=at, **f) for g, m, f in readings],
        update_conflicts=True,
        unique_fields=["series"],
        update_fields=["sampled_at", *_FIELDS],
    )
    payload = {"host": host.pk, "name": host.name, "t": at.isoformat(), "sampled_at": sample.sampled_at}
    live.publish_on_commit(
        [live.host_group(host.pk)], "host.utilization", {**payload, "gpus": gpu_events, "vgpus": vgpu_events}
    )
    return len(readings)


# --- rollup and retention ---------------------------------------------------------------------------------
WATERMARK = "minute-rollup"


def _minute_averages(start: datetime, end: datetime) -> dict[tuple[int, datetime], dict[int, dict]]:
    rows = (
        RawSample.objects.filter(sampled_at__gte=start, sampled_at__lt=end)
        .annotate(minute=TruncMinute("sampled_at"))
        .values("series_id", "minute")
        .annotate(**{f"a_{f}": Avg(f) for f in _FIELDS})
        .order_by()
        .values_list("series_id", "minute", *(f"a_{f}" for f in _FIELDS))
    )
    blocks: dict[tuple[int, datetime], dict[int, dict]] = defaultdict(dict)
    for series_id, minute, *values in rows.iterator(chunk_size=20000):
        minute = minute.astimezone(UTC)
        blocks[series_id, minute.replace(minute=0)][minute.minute] = dict(zip(_FIELDS, values, strict=True))
    return blocks


def rollup(now: datetime | None = None, *, max_hours: int = 6) -> int:
    """Pack each complete hour of raw samples not rolled up yet (after the watermark) into one minute block
    per series; idempotent (a block written twice is written once) and incremental (the watermark).
    The minutes of the hours not rolled up yet are read from raw (``history``). Returns blocks written."""
    now = now or timezone.now()
    storage.ensure_partitions(now)
    done_upto = (now - ROLLUP_GRACE).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    mark = RollupWatermark.objects.filter(name=WATERMARK).first()
    start = mark.upto if mark else done_upto - timedelta(hours=settings.PORTAL_RAW_RETENTION_H)
    start = max(start, done_upto - timedelta(hours=settings.PORTAL_RAW_RETENTION_H))  # older raw is gone
    written = 0
    hour = start
    while hour < done_upto and max_hours > 0:
        with transaction.atomic():
            if storage.partitioned():  # an hour of a large fleet groups in memory, not in sort files
                with connection.cursor() as cur:
                    cur.execute("SET LOCAL work_mem = '256MB'")
            blocks = _minute_averages(hour, hour + timedelta(hours=1))
            MinuteBlock.objects.bulk_create(
                [MinuteBlock(series_id=s, hour=h, data=storage.pack_minutes(m)) for (s, h), m in blocks.items()],
                batch_size=5000,
                ignore_conflicts=True,
            )
            hour += timedelta(hours=1)
            RollupWatermark.objects.update_or_create(name=WATERMARK, defaults={"upto": hour})
        written += len(blocks)
        max_hours -= 1
    return written


def prune(now: datetime | None = None) -> dict:
    """Retention: raw older than PORTAL_RAW_RETENTION_H, minute blocks older than PORTAL_MINUTE_RETENTION_D.
    PostgreSQL drops whole partitions (an hour's raw, a day's blocks); SQLite deletes rows."""
    now = now or timezone.now()
    raw_cut = now - timedelta(hours=settings.PORTAL_RAW_RETENTION_H)
    minute_cut = now - timedelta(days=settings.PORTAL_MINUTE_RETENTION_D)
    if storage.partitioned():
        with transaction.atomic():
            storage.ensure_partitions(now)
            return {
                "raw": storage.drop_partitions_before(storage.RAW_TABLE, raw_cut),
                "minute": storage.drop_partitions_before(storage.MINUTE_TABLE, minute_cut),
            }
    return {
        "raw": RawSample.objects.filter(sampled_at__lt=raw_cut).delete()[0],
        "minute": MinuteBlock.objects.filter(hour__lt=minute_cut - timedelta(hours=1)).delete()[0],
    }


def history(gpu_id: int, *, mdev_uuid: str = "", since: datetime) -> list[dict]:
    """Samples for a chart: minute averages before the first raw sample not rolled up, raw from there."""
    series = SampleSeries.objects.filter(gpu_id=gpu_id, mdev_uuid=mdev_uuid).values_list("pk", flat=True).first()
    if series is None:
        return []
    mark = RollupWatermark.objects.filter(name=WATERMARK).values_list("upto", flat=True).first()
    raw_from = max(since, mark) if mark else since
    points = []
    if mark and since < mark:
        for block in MinuteBlock.objects.filter(series_id=series, hour__gte=since - timedelta(hours=1), hour__lt=mark):
            for minute, f in storage.unpack_minutes(block.data).items():
                t = block.hour + timedelta(minutes=minute)
                if t >= since:
                    points.append({"t": t.timestamp(), "sm_util": f["sm_util"], "fb_used_mib": f["fb_used_mib"]})
    recent = RawSample.objects.filter(series_id=series, sampled_at__gte=raw_from).order_by("sampled_at")
    points += [
        {"t": t.timestamp(), "sm_util": sm, "fb_used_mib": fb}
        for t, sm, fb in recent.values_list("sampled_at", "sm_util", "fb_used_mib")
    ]
    return points


# --- the operators' fleet event ---------------------------------------------------------------------------
#: What a dashboard last got of each GPU, in this process: [SM %, FB used MiB, FB total MiB, °C] rounded.
_sent: dict[int, list] = {}


def _shown(sm, fb_used, fb_total, temp) -> list:
    """A GPU's row as the dashboards show it: whole percent, FB to 64 MiB, whole degrees."""
    return [
        round(sm or 0),
        int(fb_used or 0) // 64 * 64,
        fb_total,
        None if temp is None else round(temp),
    ]


def fleet_rows(gpu_ids=None, since: datetime | None = None) -> list[tuple[list, datetime]]:
    """The latest row per GPU ``[gpu id, SM %, FB used MiB, FB total MiB, °C]``, each with its sample time."""
    latest = LatestSample.objects.filter(series__mdev_uuid="")
    if since is not None:
        latest = latest.filter(sampled_at__gte=since)
    if gpu_ids is not None:
        latest = latest.filter(series__gpu_id__in=gpu_ids)
    fields = ("series__gpu_id", "sampled_at", "sm_util", "fb_used_mib", "fb_total_mib", "temperature_c")
    return [([gpu, *_shown(*figures)], t) for gpu, t, *figures in latest.values_list(*fields)]


def publish_fleet(now: datetime | None = None) -> int:
    """One ``fleet.utilization`` event to the operators' dashboards with the GPUs whose shown figures
    changed since the last one (``full: false``); a dashboard gets the rest once, when it asks for the
    GPUs it shows (``fleet-snapshot``, ``fleet_rows``). With a tenth of a fleet busy the message is
    that tenth, not every GPU. Rows ``[gpu id, SM %, FB used MiB, FB total MiB, °C]``; ``sampled_at``
    the oldest sample in it (so staleness is not understated). Returns the rows sent."""
    now = now or timezone.now()
    rows = fleet_rows(since=now - timedelta(seconds=2 * settings.PORTAL_SAMPLE_INTERVAL_S))
    changed = [(row, t) for row, t in rows if _sent.get(row[0]) != row[1:]]
    if not changed:
        return 0
    oldest = min(t for _, t in changed)
    gpus = [row for row, _ in changed]
    live.publish(live.OPERATORS, "fleet.utilization", {"sampled_at": oldest.timestamp(), "full": False, "gpus": gpus})
    _sent.update({row[0]: row[1:] for row in gpus})
    return len(gpus)
