"""Utilization samples: stored per GPU and vGPU, rolled up per minute, pruned by age, pushed live."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory import tasks
from inventory.drivers.telemetry import GPUTelemetry, HostTelemetry
from inventory.models import Host, SampleResolution, UtilizationSample
from inventory.services.utilization import history, prune, record_sample, rollup, sample_host

pytestmark = pytest.mark.django_db


def test_sampling_a_lab_host_stores_one_row_per_gpu(lab):
    host = lab("lab-a40=A40x2")
    sample = sample_host(host)
    assert sample.source == "simulated" and len(sample.gpus) == 2
    rows = UtilizationSample.objects.filter(gpu__host=host)
    assert rows.count() == 2 and all(r.fb_total_mib == 49152 and r.sm_util < 2 for r in rows)
    assert tasks.sample_utilization.apply(args=[host.pk]).get() == 2


def test_missing_nvml_is_a_status_not_numbers(lab):
    host = lab()
    Host.objects.filter(pk=host.pk).update(telemetry_source="nvml")
    host.refresh_from_db()
    sample_host(host)
    host.refresh_from_db()
    assert host.telemetry_status == "NVML Shared Library Not Found"
    assert not UtilizationSample.objects.exists()


def _row(gpu, at, sm, resolution=SampleResolution.RAW, mdev=""):
    return UtilizationSample.objects.create(
        gpu=gpu, mdev_uuid=mdev, sampled_at=at, sm_util=sm, mem_util=0, fb_used_mib=100 * sm, resolution=resolution
    )


def test_rollup_averages_each_complete_minute_once(lab):
    gpu = lab().gpus.first()
    minute = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=3)
    for i, sm in enumerate([10, 20, 30]):
        _row(gpu, minute + timedelta(seconds=10 * i), sm)
    _row(gpu, minute + timedelta(minutes=1, seconds=5), 50)
    _row(gpu, timezone.now(), 99)  # the current minute is not complete: left for later
    assert rollup() == 2
    rows = UtilizationSample.objects.filter(resolution=SampleResolution.MINUTE).order_by("sampled_at")
    assert [(r.sampled_at, r.sm_util, r.fb_used_mib) for r in rows] == [
        (minute, 20.0, 2000),
        (minute + timedelta(minutes=1), 50.0, 5000),
    ]
    assert rollup() == 0  # idempotent


def test_prune_keeps_raw_for_hours_and_minutes_for_weeks(lab, settings):
    gpu = lab().gpus.first()
    now = timezone.now()
    _row(gpu, now - timedelta(hours=settings.PORTAL_RAW_RETENTION_H + 1), 1)
    _row(gpu, now - timedelta(hours=1), 2)
    _row(gpu, now - timedelta(days=settings.PORTAL_MINUTE_RETENTION_D + 1), 3, SampleResolution.MINUTE)
    _row(gpu, now - timedelta(days=2), 4, SampleResolution.MINUTE)
    assert prune() == {"raw": 1, "minute": 1}
    assert sorted(UtilizationSample.objects.values_list("sm_util", flat=True)) == [2.0, 4.0]


def test_history_uses_minutes_where_raw_is_gone(lab, settings):
    gpu = lab().gpus.first()
    now = timezone.now()
    _row(gpu, now - timedelta(hours=settings.PORTAL_RAW_RETENTION_H + 2), 7, SampleResolution.MINUTE)
    _row(gpu, now - timedelta(minutes=5), 8, SampleResolution.MINUTE)  # duplicate of raw: not shown twice
    _row(gpu, now - timedelta(minutes=5), 9)
    points = history(gpu.pk, since=now - timedelta(days=1))
    assert [p["sm_util"] for p in points] == [7, 9]


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
