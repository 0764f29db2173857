"""Utilization samples: stored per GPU and vGPU, rolled up per minute, pruned by age, pushed live."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory import tasks
from inventory.drivers.telemetry import GPUTelemetry, HostTelemetry
from inventory.models import Host, MinuteBlock, RawSample, SampleSeries
from inventory.services import sample_storage
from inventory.services.utilization import history, prune, record_sample, rollup, sample_host

pytestmark = pytest.mark.django_db


def test_sampling_a_lab_host_stores_one_row_per_gpu(lab):
    host = lab("lab-a40=A40x2")
    sample = sample_host(host)
    assert sample.source == "simulated" and len(sample.gpus) == 2
    rows = RawSample.objects.filter(series__gpu__host=host, series__mdev_uuid="")
    assert rows.count() == 2 and all(r.fb_total_mib == 49152 and r.sm_util < 2 for r in rows)
    assert tasks.sample_utilization.apply(args=[host.pk]).get() == 2


def test_missing_nvml_is_a_status_not_numbers(lab):
    host = lab()
    Host.objects.filter(pk=host.pk).update(telemetry_source="nvml")
    host.refresh_from_db()
    sample_host(host)
    host.refresh_from_db()
    assert host.telemetry_status == "NVML Shared Library Not Found"
    assert not RawSample.objects.exists()


def _row(gpu, at, sm, mdev=""):
    sample_storage.ensure_partitions(at)
    series, _ = SampleSeries.objects.get_or_create(gpu=gpu, mdev_uuid=mdev)
    return RawSample.objects.create(series=series, sampled_at=at, sm_util=sm, mem_util=0, fb_used_mib=100 * sm)


def _minutes(gpu, mdev=""):
    series = SampleSeries.objects.get(gpu=gpu, mdev_uuid=mdev)
    return [
        (block.hour + timedelta(minutes=m), f["sm_util"], f["fb_used_mib"])
        for block in MinuteBlock.objects.filter(series=series).order_by("hour")
        for m, f in sorted(sample_storage.unpack_minutes(block.data).items())
    ]


def test_rollup_averages_each_complete_minute_once(lab):
    gpu = lab().gpus.first()
    now = timezone.now().replace(minute=30)
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    for i, sm in enumerate([10, 20, 30]):
        _row(gpu, hour + timedelta(minutes=3, seconds=10 * i), sm)
    _row(gpu, hour + timedelta(minutes=4, seconds=5), 50)
    _row(gpu, now, 99)  # the current hour is not complete: left for later (charts read it raw)
    assert rollup(now) == 1  # one block: this series' hour
    assert _minutes(gpu) == [
        (hour + timedelta(minutes=3), 20.0, 2000),
        (hour + timedelta(minutes=4), 50.0, 5000),
    ]
    assert rollup(now) == 0  # idempotent: the watermark is past that hour


def test_prune_keeps_raw_for_hours_and_minutes_for_weeks(lab, settings):
    gpu = lab().gpus.first()
    now = timezone.now()
    _row(gpu, now - timedelta(hours=settings.PORTAL_RAW_RETENTION_H + 2), 1)
    _row(gpu, now - timedelta(hours=1), 2)
    series = SampleSeries.objects.get(gpu=gpu)
    old_day = now - timedelta(days=settings.PORTAL_MINUTE_RETENTION_D + 2)
    for at, sm in ((old_day, 3), (now - timedelta(days=2), 4)):
        at = at.replace(minute=0, second=0, microsecond=0)
        sample_storage.ensure_partitions(at)
        MinuteBlock.objects.create(series=series, hour=at, data=sample_storage.pack_minutes({0: {"sm_util": sm}}))
    assert prune(now) == {"raw": 1, "minute": 1}
    assert list(RawSample.objects.values_list("sm_util", flat=True)) == [2.0]
    assert [sample_storage.unpack_minutes(b.data)[0]["sm_util"] for b in MinuteBlock.objects.all()] == [4.0]


def test_history_uses_minutes_where_raw_is_rolled_up(lab, settings):
    """Minute averages before the watermark, raw after it: a minute is never shown twice."""
    gpu = lab().gpus.first()
    now = timezone.now()
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    _row(gpu, hour + timedelta(minutes=5), 7)
    rollup(now)
    _row(gpu, now - timedelta(minutes=1), 9)
    points = history(gpu.pk, since=now - timedelta(days=1))
    assert [p["sm_util"] for p in points] == [7, 9]
    assert points[0]["t"] == (hour + timedelta(minutes=5)).timestamp()


def test_a_gpu_whose_reading_failed_is_skipped(lab):
    host = lab()
    gpu = host.gpus.first()
    sample = HostTelemetry(
        source="nvml",
        status="ok",
        sampled_at=timezone.now().timestamp(),
        gpus=(GPUTelemetry(pci_address=gpu.pci_address, uuid="", name="", error="GPU is lost"),),
    )
    assert record_sample(host, sample) == 0
