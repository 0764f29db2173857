"""The trace replay through the real request service (``replay_trace --through-db``): the same decisions
as the engine in-process, every claim on the rows, and a scratch database that leaves the portal's alone."""

import io
import json
import os
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from allocations.models import Desktop, Quota
from allocations.placement import replay_db
from allocations.services.quotas import counted_usage
from inventory.models import GPU, Host

TRACES = Path(settings.BASE_DIR).parent / "shared" / "traces" / "openb"
NODES = TRACES / "openb_node_list_gpu_node.csv"
PODS = TRACES / "openb_pod_list_default.csv"

pytestmark = pytest.mark.skipif(not PODS.exists(), reason="the shared openb trace is not beside the checkout")


@pytest.mark.django_db
def test_through_db_makes_the_engines_decisions_one_by_one(capsys, tmp_path):
    out = tmp_path / "placements.jsonl"
    summary = replay_db.run_through_db(
        str(NODES), str(PODS), policy="ours", seed=42, limit=300, out_path=str(out), scratch=False
    )
    assert summary["arrivals"] == 300 and summary["in_process"]["same_decisions"] == "300/300"
    assert summary["unalloc_130"] == summary["in_process"]["unalloc_130"]
    assert summary["stranded_130"] == pytest.approx(summary["in_process"]["stranded_130"], abs=1e-6)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["seq"] for line in lines] == list(range(300))
    assert set(lines[0]) == {"seed", "seq", "pod", "host", "gpus", "milli", "profile"}
    # every placement is a desktop whose claims are on the rows
    placed = [line for line in lines if line["host"]]
    assert Desktop.objects.count() == len(placed) == summary["placed"]
    for host in Host.objects.filter(desktops__isnull=False).distinct():
        holders = Desktop.objects.holding_capacity().filter(host=host)
        assert host.vcpus_used == sum(d.vcpus for d in holders)
    for gpu in GPU.objects.filter(instances_used__gt=0):
        assert gpu.instances_used == gpu.desktops.count()
    quota = Quota.objects.get()
    assert (quota.desktops_held, quota.framebuffer_held_mib) == counted_usage(quota.tenant)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["placed"] == summary["placed"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the scratch database and forked clients: PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_the_command_replays_in_a_scratch_database_with_concurrent_clients():
    out = io.StringIO()
    call_command(
        "replay_trace",
        str(NODES),
        str(PODS),
        "--policy",
        "ours",
        "--model",
        "vgpu",
        "--seeds",
        "42",
        "--through-db",
        "--limit",
        "120",
        "--clients",
        "2",
        stdout=out,
    )
    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    assert summary["database"] == "postgresql" and summary["clients"] == 2
    assert summary["arrivals"] == 120 and summary["placed"] == 120  # the first arrivals all fit
    assert summary["rejected_by_reason"] == {}  # no "try again" between the two clients
    assert summary["decisions_per_s"] > 0
    # nothing of the replay in the portal's own database, and the scratch database is gone
    assert not Host.objects.filter(name__startswith="openb-node").exists()
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [f"portal_replay_{os.getpid()}"])
        assert cur.fetchone()[0] == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "fractional"], "--model vgpu"),
        (["--model", "vgpu", "--seeds", "42-43"], "one seed"),
        (["--model", "vgpu", "--clients", "0"], "at least 1"),
    ],
)
def test_through_db_refuses_what_it_cannot_replay(extra, message):
    with pytest.raises(CommandError, match=message):
        call_command("replay_trace", str(NODES), str(PODS), "--through-db", *extra)
