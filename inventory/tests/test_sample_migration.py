"""Migration 0011 carries the old wide samples into the compact tables (issue 19)."""

from datetime import UTC, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = ("inventory", "0010_host_maintenance_drain_retire")


def _migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target] if target else executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_old_minute_rows_of_the_first_raw_hour_are_kept_and_history_reads_every_minute():
    """Review finding: the migration carried minute rows only up to the hour of the first raw sample and
    the new rollup re-made that hour from raw rows, which start mid-hour (older raw was pruned by age):
    the minutes between the hour's start and the first raw sample were lost."""
    _migrate(BEFORE)
    old = MigrationExecutor(connection).loader.project_state([BEFORE]).apps
    Host, GPU, Old = (old.get_model("inventory", name) for name in ("Host", "GPU", "UtilizationSample"))
    host = Host.objects.create(name="h", libvirt_uri="test:///default", state="online", cpu_cores=8, memory_mib=8192)
    gpu = GPU.objects.create(host=host, pci_address="0000:41:00.0", model="A40", framebuffer_mib=49152, mode="vgpu")
    hour = (timezone.now() - timedelta(hours=5)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    first_raw = hour + timedelta(minutes=40)
    for minute in range(0, 60):  # the old rollup had made every minute of that hour (and the one before)
        for at in (hour - timedelta(hours=1) + timedelta(minutes=minute), hour + timedelta(minutes=minute)):
            Old.objects.create(gpu=gpu, resolution="minute", sampled_at=at, sm_util=minute, mem_util=1, fb_used_mib=2)
    for second in range(0, 20 * 60, 60):  # raw rows from 40 min into the hour (older ones pruned)
        at = first_raw + timedelta(seconds=second)
        Old.objects.create(gpu=gpu, resolution="raw", sampled_at=at, sm_util=99, mem_util=1, fb_used_mib=2)

    _migrate(None)

    from inventory.models import RawSample, RollupWatermark
    from inventory.services import utilization

    assert RawSample.objects.count() == 20
    assert RollupWatermark.objects.get().upto == hour + timedelta(hours=1)  # the rollup goes on from there
    points = utilization.history(gpu.pk, since=hour - timedelta(hours=1))
    minutes = {p["t"] if "t" in p else p["sampled_at"] for p in points}
    assert len(minutes) >= 120  # both hours whole: no minute of the first raw hour went missing
