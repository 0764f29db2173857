"""Issue 19: each host's worker queues its own hosts' samples and heartbeats; beat and the default
worker hand out nothing per host per interval (send-heartbeats cost the default worker ~3 s every 30 s
at 1,213 hosts)."""

import pytest

from inventory import tasks
from inventory.choices import HostState
from inventory.models import Host
from inventory.rhythm import SamplingRhythm, start
from portal.celery import app

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch):
    """What the rhythm hands to Celery: (task, host id, queue, expires) per apply_async."""
    sent = []

    def recorder(name):
        return lambda args, queue, expires: sent.append((name, args[0], queue, expires))

    monkeypatch.setattr(tasks.sample_utilization, "apply_async", recorder("sample_utilization"))
    monkeypatch.setattr(tasks.heartbeat, "apply_async", recorder("heartbeat"))
    return sent


def test_a_tick_queues_samples_every_round_and_heartbeats_every_heartbeat_interval(queued, settings):
    settings.PORTAL_SAMPLE_INTERVAL_S = 5
    settings.PORTAL_HEARTBEAT_INTERVAL_S = 30
    a = Host.objects.create(name="a", libvirt_uri="test:///default", state=HostState.ONLINE)
    down = Host.objects.create(name="down", libvirt_uri="test:///default", state=HostState.OFFLINE)
    Host.objects.create(name="other", libvirt_uri="test:///default", state=HostState.ONLINE)  # not this worker's
    rhythm = SamplingRhythm(["celery", "host.a", "host.down"], tasks.sample_utilization, tasks.heartbeat)
    rounds = []
    for now in (1000.0, 1005.0, 1010.0, 1025.0, 1030.0, 1035.0):
        queued.clear()
        assert rhythm.tick(now) == 1  # one sample: the offline host is not sampled
        rounds.append(sorted(queued))
    sample = ("sample_utilization", a.pk, "host.a", 5)
    beats = [("heartbeat", a.pk, "host.a", 30.0), ("heartbeat", down.pk, "host.down", 30.0)]
    # the first tick heartbeats at once; then only once 30 s have passed, to the offline host too (how it
    # comes back online); samples go every round, each to the host's own queue
    assert rounds == [sorted([sample, *beats]), [sample], [sample], [sample], sorted([sample, *beats]), [sample]]


def test_a_sampling_interval_longer_than_the_heartbeats_does_not_delay_them(queued, settings):
    """Samples every 60 s must not put heartbeats off to every 60 s (a 120 s silence takes a host offline):
    the rhythm wakes at the shorter interval, and a wake-up a little early still counts."""
    settings.PORTAL_SAMPLE_INTERVAL_S = 60
    settings.PORTAL_HEARTBEAT_INTERVAL_S = 30
    Host.objects.create(name="a", libvirt_uri="test:///default", state=HostState.ONLINE)
    rhythm = SamplingRhythm(["host.a"], tasks.sample_utilization, tasks.heartbeat)
    assert rhythm.period() == 30
    kinds = []
    for now in (0.0, 29.99, 60.0, 89.98, 120.0):
        queued.clear()
        rhythm.tick(now)
        kinds.append(sorted(name for name, *_ in queued))
    both, beat = ["heartbeat", "sample_utilization"], ["heartbeat"]
    assert kinds == [both, beat, both, beat, both]


def test_heartbeats_queued_by_the_rhythm_run_on_the_host_and_mark_it_alive(lab, run_tasks):
    host = lab("lab-a=A40x1")
    Host.objects.filter(pk=host.pk).update(last_heartbeat=None)
    rhythm = SamplingRhythm([host.queue], tasks.sample_utilization, tasks.heartbeat)
    with run_tasks():
        rhythm.tick()
    assert Host.objects.get(pk=host.pk).last_heartbeat is not None


def test_beat_hands_out_no_heartbeats_and_the_default_worker_keeps_no_rhythm():
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "inventory.tasks.send_heartbeats" not in scheduled
    assert "inventory.tasks.sample_all_hosts" not in scheduled
    assert "inventory.tasks.check_heartbeats" in scheduled  # silent hosts still go offline

    class Consumer:  # a worker that consumes only the default queue
        class task_consumer:  # noqa: N801
            queues = [type("Queue", (), {"name": "celery"})()]

    assert start(Consumer, tasks.sample_utilization, tasks.heartbeat) is None


def test_send_heartbeats_still_works_by_hand(queued):
    Host.objects.create(name="a", libvirt_uri="test:///default", state=HostState.OFFLINE)
    Host.objects.create(name="gone", libvirt_uri="test:///default", state=HostState.RETIRED)
    assert tasks.send_heartbeats.run() == 1
    assert [(name, queue) for name, _pk, queue, _exp in queued] == [("heartbeat", "host.a")]


def test_the_five_minute_sync_and_reconciliation_are_queued_by_the_hosts_worker_not_by_beat(
    queued, settings, monkeypatch
):
    """The 10-minute live run at 1,213 hosts (bench/fleet_live.py) found 2 of 297 fleet updates expired,
    each right after beat's sync-all-hosts / reconcile-hosts fan-outs held the one default worker for
    3.4 s / 1.5 s. Each host's worker now queues its own sync and reconciliation every 300 s (first one
    interval after start), sync to its hosts in service, reconciliation to its reachable ones."""
    from allocations import tasks as allocation_tasks

    monkeypatch.setattr(
        tasks.sync_host_by_id,
        "apply_async",
        lambda args, queue, expires: queued.append(("sync", args[0], queue, expires)),
    )
    monkeypatch.setattr(
        allocation_tasks.reconcile_host_by_id,
        "apply_async",
        lambda args, queue, expires: queued.append(("reconcile", args[0], queue, expires)),
    )
    settings.PORTAL_SAMPLE_INTERVAL_S = 5
    a = Host.objects.create(name="a", libvirt_uri="test:///default", state=HostState.ONLINE)
    down = Host.objects.create(name="down", libvirt_uri="test:///default", state=HostState.OFFLINE)
    rhythm = SamplingRhythm(["host.a", "host.down"], tasks.sample_utilization, tasks.heartbeat)
    slow = {}
    for now in (0.0, 5.0, 295.0, 300.0, 305.0, 600.0):
        queued.clear()
        rhythm.tick(now)
        slow[now] = sorted((name, host) for name, host, *_ in queued if name in ("sync", "reconcile"))
    both = sorted([("sync", a.pk), ("sync", down.pk), ("reconcile", a.pk)])
    assert slow == {0.0: [], 5.0: [], 295.0: [], 300.0: both, 305.0: [], 600.0: both}
    beat_tasks = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert not beat_tasks & {"inventory.tasks.sync_all_hosts", "allocations.tasks.reconcile_all"}
