"""A live run of beat and the default worker at the trace's 1,213 hosts (issue 19's goal: the default
worker <= 20 % busy and 0 fleet updates expired in a 10-minute run with beat and workers).

    eval "$(scripts/services.sh start)" && export DATABASE_URL REDIS_URL
    .venv/bin/python bench/fleet_live.py [--minutes 10] [--hosts 1213] [--loadgens 2] [--redis-db 12]

It builds its own PostgreSQL database (``portal_bench_live`` on DATABASE_URL's server: created,
migrated, dropped at the end) with the first --hosts nodes of the openb trace as hosts and GPUs
(``bench.fleet_scale.build``: the replay's rows, one GPU in ten running a desktop), uses Redis db
--redis-db (flushed before and after) as broker and channel layer, and starts real processes:

- ONE default worker as ``scripts/run.sh`` starts it: ``celery -A portal worker -Q celery -c 1``;
- celery beat with the portal's schedule (``portal/celery.py``);
- --loadgens load generators standing in for the hosts' own workers: each calls
  ``inventory.services.utilization.record_sample`` for its share of the hosts every
  PORTAL_SAMPLE_INTERVAL_S round with synthetic telemetry (what ``sample_utilization`` does on a host
  after reading NVML), and stamps its hosts' heartbeats every 30 s (one UPDATE, where each host's
  ``heartbeat`` task would write its own row), so ``check_heartbeats`` keeps them online;
- in this process, a channel-layer subscriber in the operators' group (what a dashboard's websocket
  consumer joins), counting the ``fleet.utilization`` events that reach it.

Measured between beat's start and its stop (plus a few seconds for the worker to drain): the default
worker's CPU seconds (its process and its pool child, /proc/<pid>/stat utime+stime) over wall time;
``publish-fleet-utilization`` sent by beat (beat's log) against run/discarded as expired by the worker
(its log: ``Discarding revoked task``); the tasks the default worker ran, by name; heartbeats and
samples left in the hosts' queues (no host workers run here, so whatever anyone queued on a host's
queue stays there to be counted: the default worker should queue none); and how many hosts per round
the load generators kept up with. Prints JSON figures and a summary. Every process it started is
stopped, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from urllib.parse import urlsplit, urlunsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
DATABASE = "portal_bench_live"
HEARTBEAT_S = 30.0
TICK = os.sysconf("SC_CLK_TCK")


def _urls(redis_db: int) -> tuple[str, str, str]:
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        sys.exit('set DATABASE_URL to a PostgreSQL server (eval "$(scripts/services.sh start)")')
    parts = urlsplit(base)
    bench = urlunsplit(parts._replace(path="/" + DATABASE))
    admin = urlunsplit(parts._replace(path="/postgres"))
    redis = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6390/0"))
    return bench, admin, urlunsplit(redis._replace(path=f"/{redis_db}"))


def _psql(admin_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql)


# --- CPU of a process tree ---------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK  # ppid, utime + stime


def tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds of ``root`` and every live descendant, per pid."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            got = _stat(int(name))
            if got:
                parents[int(name)], cpu[int(name)] = got
    keep, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        for child, parent in parents.items():
            if parent == p and child not in keep:
                keep.add(child)
                frontier.append(child)
    return {p: cpu[p] for p in keep if p in cpu}


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[p] - before.get(p, 0.0) for p in after)


# --- the load generator (a subprocess of this script) ------------------------------------------------


def loadgen(part: int, parts: int, until: float, out: str) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.db import close_old_connections
    from django.utils import timezone

    from allocations.models import Desktop
    from inventory.drivers.telemetry import GPUTelemetry, HostTelemetry, VGPUTelemetry
    from inventory.models import GPU, Host
    from inventory.services.utilization import record_sample

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    interval = float(settings.PORTAL_SAMPLE_INTERVAL_S)
    hosts = [h for h in Host.objects.order_by("pk") if h.pk % parts == part]
    mine = [h.pk for h in hosts]
    mdev_of = {
        gpu_id: str(mdev)
        for gpu_id, mdev in Desktop.gpus.through.objects.filter(desktop__host_id__in=mine).values_list(
            "gpu_id", "desktop__mdev_uuid"
        )
    }
    boards: dict[int, list] = {}
    for gpu in GPU.objects.filter(host_id__in=mine).order_by("pci_address"):
        boards.setdefault(gpu.host_id, []).append(gpu)

    def reading(host, k: int) -> HostTelemetry:
        gpus = []
        for b, gpu in enumerate(boards.get(host.pk, ())):
            vgpus = ()
            if gpu.pk in mdev_of:
                vgpus = (VGPUTelemetry(mdev_of[gpu.pk], "bench", float((k * 13 + b) % 100), 10.0, 0.0, 0.0, 1024),)
            gpus.append(
                GPUTelemetry(
                    gpu.pci_address,
                    f"GPU-{gpu.pk:08d}",
                    gpu.model,
                    sm_util=float((b * 37 + k * 7) % 100),  # changes every round: the fleet event has news
                    mem_util=12.0,
                    fb_used_mib=1024 * len(vgpus),
                    fb_total_mib=gpu.framebuffer_mib,
                    temperature_c=45.0 + b,
                    power_w=80.0 + b,
                    vgpus=vgpus,
                )
            )
        return HostTelemetry("simulated", "ok", time.time(), tuple(gpus))

    rounds, late, samples, cpu0 = [], 0, 0, time.process_time()
    beat_at, k = 0.0, 0
    start = time.time()
    while not stop.is_set() and time.time() < until:
        t0 = time.time()
        if t0 - beat_at >= HEARTBEAT_S:
            Host.objects.filter(pk__in=mine).update(last_heartbeat=timezone.now())
            beat_at = t0
        done = 0
        for host in hosts:
            if stop.is_set():
                break
            record_sample(host, reading(host, k))
            done += 1
        samples += done
        close_old_connections()
        took = time.time() - t0
        if done == len(hosts):
            rounds.append(took)
        late += took > interval
        k += 1
        stop.wait(max(0.0, interval - took))
    wall = time.time() - start
    with open(out, "w") as f:
        json.dump(
            {
                "part": part,
                "hosts": len(hosts),
                "rounds": len(rounds),
                "late_rounds": late,
                "round_s_median": round(statistics.median(rounds), 2) if rounds else None,
                "samples": samples,
                "wall_s": round(wall, 1),
                "cpu_s": round(time.process_time() - cpu0, 1),
                "cpu_ms_per_sample": round(1000 * (time.process_time() - cpu0) / max(samples, 1), 2),
            },
            f,
        )


# --- a dashboard's subscription ----------------------------------------------------------------------


class Subscriber(threading.Thread):
    """Joins the operators' group on the channel layer and counts the events that reach it."""

    def __init__(self):
        super().__init__(daemon=True, name="operators-subscriber")
        self.events: Counter = Counter()
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self):
        asyncio.run(self.listen())

    async def listen(self):
        from channels.layers import get_channel_layer

        from core import live

        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(live.OPERATORS, channel)
        self.ready.set()
        while not self.stop.is_set():
            try:
                message = await asyncio.wait_for(layer.receive(channel), 1.0)
            except TimeoutError:
                continue
            text = json.dumps(message, default=str)
            match = re.search(r'"(?:event|type)": "([a-z_.]+\.[a-z_.]+)"', text)
            self.events["fleet.utilization" if "fleet.utilization" in text else (match.group(1) if match else "?")] += 1
        await layer.group_discard(live.OPERATORS, channel)


# --- the run -----------------------------------------------------------------------------------------


def _start(cmd: list[str], log: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


def _wait_for(path: str, text: str, timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        with open(path) as f:
            if text in f.read():
                return True
        time.sleep(0.5)
    return False


def _queued_on_hosts(redis_url: str) -> Counter:
    """Messages waiting in the hosts' queues, by task name."""
    import redis

    r = redis.Redis.from_url(redis_url)
    counts: Counter = Counter()
    for key in r.scan_iter(match="host.*", count=1000):
        if r.type(key) != b"list":
            continue
        for raw in r.lrange(key, 0, -1):
            counts[json.loads(raw).get("headers", {}).get("task", "?")] += 1
    return counts


def build_fleet(n_hosts: int) -> dict:
    from django.core.management import call_command
    from django.test.utils import override_settings
    from django.utils import timezone

    from bench.fleet_scale import build
    from inventory.choices import HostState
    from inventory.models import Host

    call_command("migrate", verbosity=0)
    with override_settings(
        PORTAL_PLACEMENT_VCPU_MILLI=1,  # the trace's hosts count milli-cores, as the replay does
        CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
    ):
        fleet = build(n_hosts)
    Host.objects.update(state=HostState.ONLINE, last_heartbeat=timezone.now())
    return {"hosts": Host.objects.count(), "gpus": fleet["gpus"], "busy_gpus": fleet["busy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--hosts", type=int, default=1213)
    parser.add_argument("--loadgens", type=int, default=2)
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--loadgen", nargs=4, metavar=("PART", "PARTS", "UNTIL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:  # a load generator child: DATABASE_URL and REDIS_URL are already the bench's
        part, parts, until, out = args.loadgen
        loadgen(int(part), int(parts), float(until), out)
        return

    bench_url, admin_url, redis_url = _urls(args.redis_db)
    env = {**os.environ, "DATABASE_URL": bench_url, "REDIS_URL": redis_url, "CELERY_BROKER_URL": redis_url}
    env.pop("CHANNEL_LAYER", None)
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")})
    import django
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    _psql(admin_url, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    _psql(admin_url, f"CREATE DATABASE {DATABASE}")
    django.setup()
    from django.conf import settings
    from django.db import connections

    logs = tempfile.mkdtemp(prefix="fleet-live-")
    procs: list[subprocess.Popen] = []
    sub = Subscriber()
    figures: dict = {"minutes": args.minutes, "logs": logs, "sample_interval_s": settings.PORTAL_SAMPLE_INTERVAL_S}
    try:
        t = time.time()
        figures["fleet"] = build_fleet(args.hosts)
        figures["build_s"] = round(time.time() - t, 1)
        connections.close_all()
        print(json.dumps({"built": figures["fleet"], "build_s": figures["build_s"]}), flush=True)

        py = os.path.join(ROOT, ".venv", "bin", "python")
        worker_log, beat_log = os.path.join(logs, "worker.log"), os.path.join(logs, "beat.log")
        worker = _start(
            [py, "-m", "celery", "-A", "portal", "worker", "-Q", "celery", "-c", "1", "-n", "bench@%h", "-l", "INFO"],
            worker_log,
            env,
        )
        procs.append(worker)
        if not _wait_for(worker_log, "ready.", 120):
            raise SystemExit(f"the worker did not start: {worker_log}")
        sub.start()
        sub.ready.wait(10)
        until = time.time() + args.minutes * 60
        outs = [os.path.join(logs, f"loadgen-{k}.json") for k in range(args.loadgens)]
        loadgens = [
            _start(
                [py, os.path.abspath(__file__), "--loadgen", str(k), str(args.loadgens), str(until), outs[k]],
                os.path.join(logs, f"loadgen-{k}.log"),
                env,
            )
            for k in range(args.loadgens)
        ]
        procs.extend(loadgens)
        schedule = os.path.join(logs, "celerybeat-schedule")
        t0, cpu0 = time.time(), tree_cpu(worker.pid)
        beat = _start([py, "-m", "celery", "-A", "portal", "beat", "-l", "INFO", "--schedule", schedule], beat_log, env)
        procs.append(beat)
        timeline = []
        while time.time() < until:
            time.sleep(min(30.0, max(0.0, until - time.time())))
            c = tree_cpu(worker.pid)
            timeline.append(round(100 * cpu_between(cpu0, c) / (time.time() - t0), 1))
        _stop(beat)
        for proc in loadgens:
            proc.wait(max(60.0, 3 * settings.PORTAL_SAMPLE_INTERVAL_S))  # they stop at ``until`` by themselves
        time.sleep(5)  # the worker drains what beat sent last
        cpu1, t1 = tree_cpu(worker.pid), time.time()
        worker_cpu = cpu_between(cpu0, cpu1)
        sub.stop.set()
        sub.join(5)
        with open(beat_log) as f:
            sent = Counter(re.findall(r"Sending due task (\S+) \(", f.read()))
        with open(worker_log) as f:
            wlog = f.read()
        ran = Counter(re.findall(r"Task (\S+)\[[0-9a-f-]+\] succeeded", wlog))
        failed = Counter(re.findall(r"Task (\S+)\[[0-9a-f-]+\] raised", wlog))
        discarded = Counter(re.findall(r"Discarding revoked task: (\S+)\[", wlog))
        fleet_task = "inventory.tasks.publish_fleet_utilization"
        gens = [json.load(open(o)) for o in outs if os.path.exists(o)]
        interval = settings.PORTAL_SAMPLE_INTERVAL_S
        hosts_kept = sum(g["hosts"] for g in gens if g["rounds"] and g["round_s_median"] <= interval)
        pace = sum(g["hosts"] * interval / g["round_s_median"] for g in gens if g["round_s_median"])
        fleet_runs = [
            (float(took), int(rows))
            for took, rows in re.findall(rf"Task {fleet_task}\[[0-9a-f-]+\] succeeded in ([0-9.]+)s: (\d+)", wlog)
        ]
        figures.update(
            {
                "wall_s": round(t1 - t0, 1),
                "default_worker_cpu_s": round(worker_cpu, 1),
                "default_worker_busy_pct": round(100 * worker_cpu / (t1 - t0), 1),
                "default_worker_busy_pct_timeline": timeline,
                "fleet_updates_sent_by_beat": sent.get("publish-fleet-utilization", 0),
                "fleet_updates_run": ran.get(fleet_task, 0),
                "fleet_updates_expired": discarded.get(fleet_task, 0),
                "fleet_events_received_by_subscriber": sub.events.get("fleet.utilization", 0),
                "other_events_received_by_subscriber": {
                    k: v for k, v in sub.events.items() if k != "fleet.utilization"
                },
                "beat_sent": dict(sent),
                "default_worker_ran": dict(ran),
                "default_worker_failed": dict(failed),
                "default_worker_discarded": dict(discarded),
                "queued_on_host_queues": dict(_queued_on_hosts(redis_url)),
                "heartbeats_queued_by_default_worker": ran.get("inventory.tasks.send_heartbeats", 0),
                "loadgens": gens,
                "hosts_kept_up_per_round": hosts_kept,
                "hosts_per_interval_at_measured_pace": round(pace),
                # what the rounds achieved on average, late rounds included
                "hosts_per_interval_achieved": round(
                    sum(g["samples"] * interval / g["wall_s"] for g in gens if g["wall_s"])
                ),
                "fleet_updates_with_rows": sum(1 for _, rows in fleet_runs if rows),
                "fleet_update_rows_median": statistics.median([r for _, r in fleet_runs if r] or [0]),
                "fleet_update_task_s_median": round(statistics.median([t for t, _ in fleet_runs] or [0]), 3),
            }
        )
    finally:
        sub.stop.set()
        for proc in reversed(procs):
            _stop(proc)
        connections.close_all()
        try:
            _psql(admin_url, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
            redis.Redis.from_url(redis_url).flushdb()
        except Exception as exc:  # noqa: BLE001 - report, the figures are still worth printing
            print(f"cleanup: {exc}", file=sys.stderr)
    print(json.dumps(figures, indent=1), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    f = figures
    print(
        f"\n{f['fleet']['hosts']} hosts, {f['fleet']['gpus']} GPUs, {f['wall_s']} s with beat, "
        f"one default worker (-c 1) and {args.loadgens} load generator(s):\n"
        f"- default worker busy {f['default_worker_busy_pct']} % ({f['default_worker_cpu_s']} CPU s); goal <= 20 %\n"
        f"- fleet updates: {f['fleet_updates_sent_by_beat']} sent by beat, {f['fleet_updates_run']} run, "
        f"{f['fleet_updates_expired']} expired; {f['fleet_events_received_by_subscriber']} fleet events reached "
        f"a subscriber of the operators' group; goal 0 expired\n"
        f"- heartbeats handed out by the default worker: {f['heartbeats_queued_by_default_worker']} "
        "send_heartbeats runs; "
        f"left on the hosts' queues: {f['queued_on_host_queues']}\n"
        f"- load generators: {f['loadgens']}\n"
        f"  hosts sampled within the interval: {f['hosts_kept_up_per_round']} of {f['fleet']['hosts']} "
        f"(median round pace ~{f['hosts_per_interval_at_measured_pace']} hosts per {f['sample_interval_s']} s; "
        f"achieved on average, late rounds included: {f['hosts_per_interval_achieved']})"
    )


if __name__ == "__main__":
    main()
