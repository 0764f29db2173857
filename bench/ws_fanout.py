"""WebSocket fan-out: N signed-in operators on /ws/live/ while telemetry for ~1,000 GPUs updates every 2 s.

One ASGI process (Daphne) with the Redis channel layer serves N concurrent clients, each a
platform admin (so it joins ``operators``). Every interval this process publishes the fleet's
telemetry (125 hosts x 8 GPUs by default) to ``operators`` as the portal does (the messages
``core.live.message_for`` builds; ``sampled_at`` in epoch seconds). Clients record staleness =
receive time - sampled_at.

Printed per N (JSON lines), then a summary: delivered messages/s (and the rate that full delivery
needs), the share of the expected messages that arrived, staleness percentiles, and CPU in cores
(CPU seconds per wall second, from /proc/<pid>/stat) of the Daphne process (also per 100 clients),
of Redis, of the client processes and of the publisher.

    eval "$(scripts/services.sh start)"
    .venv/bin/python bench/ws_fanout.py --clients 100 500 --duration 30

The benchmark makes its own database (``portal_bench``, dropped at the end) next to the one in
DATABASE_URL, uses Redis database 14 of REDIS_URL for the channel layer (its ``asgi`` keys are
deleted before each run), listens and connects on 127.0.0.1 only, and stops its processes itself.
The clients run in their own processes (``--client-procs``) so that their CPU is not the
publisher's; on a small machine they still compete with the server for cores: the report says how
busy the machine was.

``--mode batch`` (the default) publishes what the portal sends operators: one ``fleet.utilization``
event per interval with a compact row per GPU (``inventory.services.utilization.publish_fleet``).
``--mode per-host`` sends every host's sample to every dashboard, the design before batching, for
comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import multiprocessing
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / "var" / "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLED_AT = re.compile(r'"sampled_at": ([0-9.]+)')
EVENT = re.compile(r'^\{"event": "([^"]+)"')


# --- the clients (their own processes) ---------------------------------------------------------


def client_process(conn, url: str, origin: str, cookies: list[str], connect_concurrency: int) -> None:
    """Hold len(cookies) websockets; count what arrives; answer the parent's commands over ``conn``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    asyncio.run(_clients(conn, url, origin, cookies, connect_concurrency))


async def _clients(conn, url, origin, cookies, connect_concurrency):
    from websockets.asyncio.client import connect

    loop = asyncio.get_running_loop()
    window = {"start": float("inf"), "stop": float("inf")}
    stats = {
        "in_window": 0,  # received between start and stop, whatever their sample time
        "measured": 0,  # sampled in [start, stop), received at any time until the end
        "late": 0,  # of those, received after stop
        "other": 0,
        "closed": 0,
        "hello_errors": 0,
        "connect_retries": 0,
    }
    staleness_ms = collections.Counter()
    last_receive = [time.time()]
    sockets = []
    gate = asyncio.Semaphore(connect_concurrency)

    async def one(cookie: str):
        # A handshake the server is too busy to accept within Daphne's websocket_connect_timeout (5 s) is
        # dropped; like a browser's live.js, try again (three tries), and count it.
        for attempt in range(3):
            try:
                async with gate:
                    ws = await connect(
                        url,
                        origin=origin,
                        additional_headers={"Cookie": f"sessionid={cookie}"},
                        compression=None,
                        ping_interval=None,  # as a browser: never closes a slow server's connection itself
                        open_timeout=60,
                        max_size=2**24,
                    )
                    hello = json.loads(await asyncio.wait_for(ws.recv(), 60))
                break
            except Exception:
                if attempt == 2:
                    raise
                stats["connect_retries"] += 1
                await asyncio.sleep(1 + attempt)
        if hello.get("event") != "hello" or "operators" not in hello["data"]["groups"]:
            stats["hello_errors"] += 1
        sockets.append(ws)
        return ws

    async def read(ws):
        try:
            async for message in ws:
                now = time.time()
                last_receive[0] = now
                match = EVENT.match(message)
                if match is None or match.group(1) not in ("host.utilization", "fleet.utilization"):
                    stats["other"] += 1
                    continue
                if window["start"] <= now <= window["stop"]:
                    stats["in_window"] += 1
                sampled = SAMPLED_AT.search(message)
                sampled_at = float(sampled.group(1)) if sampled else json.loads(message)["data"]["sampled_at"]
                if window["start"] <= sampled_at < window["stop"]:
                    stats["measured"] += 1
                    staleness_ms[int((now - sampled_at) * 1000)] += 1
                    if now > window["stop"]:
                        stats["late"] += 1
        except Exception:  # noqa: BLE001 - a dropped connection is counted, not fatal
            pass
        stats["closed"] += 1

    command = await loop.run_in_executor(None, conn.recv)
    assert command[0] == "connect"
    started = time.monotonic()
    results = await asyncio.gather(*(one(c) for c in cookies), return_exceptions=True)
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    readers = [asyncio.create_task(read(ws)) for ws in sockets]
    conn.send(("connected", len(sockets), errors[:3], len(errors), time.monotonic() - started))

    command = await loop.run_in_executor(None, conn.recv)
    assert command[0] == "window"
    window["start"], window["stop"] = command[1], command[2]

    command = await loop.run_in_executor(None, conn.recv)
    assert command[0] == "drain"
    deadline = time.time() + command[1]
    while time.time() < deadline and time.time() - last_receive[0] < command[2]:
        await asyncio.sleep(0.1)
    closed_before = stats["closed"]
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await asyncio.wait(readers, timeout=10)
    stats["closed"] = closed_before
    conn.send(("done", stats, dict(staleness_ms)))
    conn.close()


# --- the server, the database, /proc ---------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat (fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]  # guest time is already in user
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, ""))


def recreate_database(base_url: str, name: str, *, drop_only: bool = False) -> None:
    import psycopg

    parts = urlsplit(base_url)
    with psycopg.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or None,
        dbname=parts.path.lstrip("/") or "postgres",
        autocommit=True,
    ) as pg:
        pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            pg.execute(f'CREATE DATABASE "{name}"')


def make_operators(count: int) -> list[str]:
    """``count`` platform admins with a signed-in session each; returns their session keys."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from tenancy.models import Membership
    from tenancy.roles import Role

    User = get_user_model()
    unusable = make_password(None)
    User.objects.bulk_create([User(username=f"bench-op-{i:04d}", password=unusable) for i in range(count)])
    users = list(User.objects.filter(username__startswith="bench-op-").order_by("username"))
    Membership.objects.bulk_create([Membership(user=u, role=Role.PLATFORM_ADMIN) for u in users])
    return [signed_in_session(user) for user in users]


def signed_in_session(user) -> str:
    """A database session signed in as ``user`` (as the login view leaves it); its key, for the cookie."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


class Daphne:
    """One Daphne process serving portal.asgi:application on 127.0.0.1, in its own process group."""

    def __init__(self, port: int, env: dict, log: Path, command: list[str] | None = None):
        """``command``: how to start it (default: ``daphne`` serving the portal on ``port``)."""
        self.port = port
        self.log = log
        serve = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "portal.asgi:application"]
        command = command or [sys.executable, *serve]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited {self.proc.returncode}; see {log}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"daphne did not listen on 127.0.0.1:{port} in 60 s; see {log}")

    def errors(self) -> list[str]:
        """Exceptions the server logged: a consumer that crashed (e.g. a Redis read timed out under load)."""
        marker = "Exception inside application: "
        lines = self.log.read_text(errors="replace").splitlines()
        return [line.split(marker, 1)[1] for line in lines if marker in line]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)


# --- the publisher ---------------------------------------------------------------------------------

_FIELDS = ("sm_util", "mem_util", "fb_used_mib", "fb_total_mib", "temperature_c", "power_w", "encoder_util")
_FIELDS += ("decoder_util",)


def host_payload(host: int, gpus_per_host: int, sampled_at: float, rng: random.Random) -> dict:
    """What inventory.services.utilization.record_sample publishes for one host."""
    gpus = []
    for g in range(gpus_per_host):
        gpus.append(
            {
                "gpu": host * gpus_per_host + g + 1,
                "pci": f"0000:{0x17 + g:02x}:00.0",
                "sm_util": round(rng.uniform(0, 100), 1),
                "mem_util": round(rng.uniform(0, 100), 1),
                "fb_used_mib": rng.randrange(0, 49152),
                "fb_total_mib": 49152,
                "temperature_c": round(rng.uniform(30, 85), 1),
                "power_w": round(rng.uniform(60, 300), 1),
                "encoder_util": round(rng.uniform(0, 100), 1),
                "decoder_util": round(rng.uniform(0, 100), 1),
            }
        )
    at = datetime.fromtimestamp(sampled_at, tz=UTC)
    return {
        "host": host + 1,
        "name": f"gpu-{host + 1:03d}",
        "t": at.isoformat(),
        "sampled_at": sampled_at,
        "gpus": gpus,
    }


class Publisher(threading.Thread):
    """Publishes to ``operators`` from ``start_at`` until ``stop_at``: per host, staggered over the
    interval as independent samplers would (``per-host``), or one event with every host (``batch``)."""

    def __init__(self, args, start_at: float, stop_at: float, window: tuple[float, float]):
        super().__init__(daemon=True)
        self.args, self.start_at, self.stop_at, self.window = args, start_at, stop_at, window
        self.published_in_window = 0
        self.published = 0
        self.max_late_s = 0.0
        self.send_s: list[float] = []
        self.error: BaseException | None = None

    def run(self):
        try:
            if self.args.via == "publish":
                self._loop(self._send_via_publish)
            else:
                asyncio.run(self._async_loop())
        except BaseException as exc:  # noqa: BLE001 - reported by the parent
            self.error = exc

    def _events(self):
        """(due time, event type, payload factory) in order."""
        args = self.args
        round_no = 0
        while True:
            round_at = self.start_at + round_no * args.interval
            if round_at >= self.stop_at:
                return
            if args.mode == "batch":
                yield round_at, "fleet.utilization", None
            else:
                for host in range(args.hosts):
                    yield round_at + host * args.interval / args.hosts, "host.utilization", host
            round_no += 1

    def _payload(self, host, rng):
        now = time.time()
        if host is None:  # what inventory.services.utilization.publish_fleet sends: one compact row per GPU
            rows = [
                [g["gpu"], g["sm_util"], g["fb_used_mib"], g["fb_total_mib"], g["temperature_c"]]
                for h in range(self.args.hosts)
                for g in host_payload(h, self.args.gpus_per_host, now, rng)["gpus"]
            ]
            return now, {"sampled_at": now, "gpus": rows}
        return now, host_payload(host, self.args.gpus_per_host, now, rng)

    def _record(self, due, sampled_at, sent_s):
        self.max_late_s = max(self.max_late_s, sampled_at - due)
        self.send_s.append(sent_s)
        self.published += 1
        if self.window[0] <= sampled_at < self.window[1]:
            self.published_in_window += 1

    def _loop(self, send):
        rng = random.Random(1)
        for due, event, host in self._events():
            time.sleep(max(0.0, due - time.time()))
            sampled_at, payload = self._payload(host, rng)
            started = time.perf_counter()
            send(event, payload)
            self._record(due, sampled_at, time.perf_counter() - started)

    @staticmethod
    def _send_via_publish(event, payload):
        from core import live

        live.publish(live.OPERATORS, event, payload)

    async def _async_loop(self):
        # The message live.publish() sends, on one event loop: publish()'s async_to_sync opens a loop and
        # a Redis connection per call, a cost the Celery workers pay in production, not this machine.
        from channels.layers import get_channel_layer

        from core.live import OPERATORS, message_for

        layer = get_channel_layer()
        rng = random.Random(1)
        for due, event, host in self._events():
            await asyncio.sleep(max(0.0, due - time.time()))
            sampled_at, payload = self._payload(host, rng)
            started = time.perf_counter()
            await layer.group_send(OPERATORS, message_for(event, payload))
            self._record(due, sampled_at, time.perf_counter() - started)


class OverCapacity(logging.Handler):
    """Counts channels_redis's "N of M channels over capacity" (group messages it dropped)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.dropped = 0

    def emit(self, record):
        match = re.match(r"(\d+) of \d+ channels over capacity", record.getMessage())
        if match:
            self.dropped += int(match.group(1))


# --- one run ---------------------------------------------------------------------------------------


def percentile(histogram: collections.Counter, fraction: float) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    rank = fraction * (total - 1)
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen > rank:
            return value
    return max(histogram)


def run_once(args, clients: int, cookies: list[str], env: dict, redis_url: str, over_capacity: OverCapacity) -> dict:
    import redis

    r = redis.Redis.from_url(redis_url)
    for key in r.scan_iter("asgi*", count=1000):
        r.delete(key)
    redis_pid = int(r.info("server")["process_id"])

    port = free_port()
    daphne = Daphne(port, env, LOG_DIR / f"ws_fanout-daphne-{args.mode}-{clients}.log")
    ctx = multiprocessing.get_context("spawn")
    workers = []
    try:
        url, origin = f"ws://127.0.0.1:{port}/ws/live/", f"http://127.0.0.1:{port}"
        procs = max(1, min(args.client_procs, clients))
        for i in range(procs):
            parent, child = ctx.Pipe()
            share = cookies[i:clients:procs]
            p = ctx.Process(target=client_process, args=(child, url, origin, share, args.connect_concurrency))
            p.start()
            workers.append((p, parent))
        connected, failed, errors, connect_s = 0, 0, [], 0.0
        for _, pipe in workers:
            pipe.send(("connect",))
        for _, pipe in workers:
            if not pipe.poll(args.connect_timeout):
                raise RuntimeError(f"clients did not connect in {args.connect_timeout} s")
            _, ok, first_errors, failed_here, seconds = pipe.recv()
            connected += ok
            failed += failed_here
            errors += first_errors
            connect_s = max(connect_s, seconds)
        if connected == 0:
            raise RuntimeError(f"no client connected: {errors}")

        start_pub = time.time() + 0.5
        window = (start_pub + args.warmup, start_pub + args.warmup + args.duration)
        for _, pipe in workers:
            pipe.send(("window", *window))
        dropped_before = over_capacity.dropped
        publisher = Publisher(args, start_pub, window[1], window)
        publisher.start()

        time.sleep(max(0.0, window[0] - time.time()))
        pids = {"server": daphne.proc.pid, "redis": redis_pid, "publisher": os.getpid()}
        pids |= {f"client{i}": p.pid for i, (p, _) in enumerate(workers)}
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        busy0, wall0, t0 = *machine_busy(), time.monotonic()
        time.sleep(max(0.0, window[1] - time.time()))
        cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        busy1, wall1, elapsed = *machine_busy(), time.monotonic() - t0
        server_rss = rss_mib(daphne.proc.pid)
        publisher.join(timeout=args.interval * 2 + 30)
        if publisher.error is not None:
            raise RuntimeError(f"publisher failed: {publisher.error!r}")

        for _, pipe in workers:
            pipe.send(("drain", args.drain, 2.0))
        totals = collections.Counter()
        staleness = collections.Counter()
        for _, pipe in workers:
            if not pipe.poll(args.drain + 60):
                raise RuntimeError("clients did not report")
            _, stats, hist = pipe.recv()
            totals.update(stats)
            staleness.update({int(k): v for k, v in hist.items()})
    finally:
        for p, _ in workers:
            p.join(timeout=20)
            if p.is_alive():
                p.kill()
                p.join()
        daphne.stop()
    server_errors = daphne.errors()

    def cores(name):
        return round((cpu1[name] - cpu0[name]) / elapsed, 3)

    server_cores = cores("server")
    expected = connected * publisher.published_in_window
    events_per_interval = 1 if args.mode == "batch" else args.hosts
    per_client_rate = events_per_interval / args.interval
    rate = totals["in_window"] / args.duration
    return {
        "clients": clients,
        "connected": connected,
        "connect_failed": failed,
        "connect_errors": errors[:3],
        "connect_s": round(connect_s, 2),
        "mode": args.mode,
        "via": args.via,
        "hosts": args.hosts,
        "gpus": args.hosts * args.gpus_per_host,
        "interval_s": args.interval,
        "duration_s": args.duration,
        "published": publisher.published_in_window,
        "expected_msgs_per_s": round(connected * per_client_rate, 1),
        "delivered_msgs_per_s": round(rate, 1),
        "expected_deliveries": expected,
        "delivered": totals["measured"],
        "delivered_fraction": round(totals["measured"] / expected, 4) if expected else None,
        "delivered_after_window": totals["late"],
        "staleness_ms": {
            "p50": percentile(staleness, 0.50),
            "p95": percentile(staleness, 0.95),
            "p99": percentile(staleness, 0.99),
            "max": max(staleness) if staleness else None,
        },
        "server_cpu_cores": server_cores,
        "server_cpu_per_100_clients": round(server_cores / (connected / 100), 3),
        "server_rss_mib": server_rss,
        # CPU the server spent per message it delivered, and what one fully busy core would then carry.
        "server_cpu_us_per_msg": round(server_cores / rate * 1e6) if rate else None,
        "clients_per_server_core_estimate": int(rate / server_cores / per_client_rate) if server_cores else None,
        "redis_cpu_cores": cores("redis"),
        "clients_cpu_cores": round(sum(cores(n) for n in cpu0 if n.startswith("client")), 3),
        "publisher_cpu_cores": cores("publisher"),
        "machine_cpu_busy": round((busy1 - busy0) / (wall1 - wall0), 3) if wall1 > wall0 else None,
        "machine_cores": os.cpu_count(),
        # CPU that none of the benchmark's processes used: other work on this machine competing with the server.
        "others_cpu_cores": round((busy1 - busy0) / CLK_TCK / elapsed - sum(cores(n) for n in cpu0), 3),
        "publish_ms_p95": round(sorted(publisher.send_s)[int(0.95 * (len(publisher.send_s) - 1))] * 1000, 2),
        "publisher_max_late_ms": round(publisher.max_late_s * 1000, 1),
        "group_messages_dropped_over_capacity": over_capacity.dropped - dropped_before,
        "clients_closed_early": totals["closed"],
        "server_errors": len(server_errors),
        "server_error_kinds": sorted(set(server_errors))[:3],
        "server_log": str(daphne.log.relative_to(ROOT)),
        "hello_errors": totals["hello_errors"],
        "connect_retries": totals["connect_retries"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 500], help="N values (default 100 500)")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds per N (default 30)")
    parser.add_argument("--warmup", type=float, default=4.0, help="publishing before measuring (default 4 s)")
    parser.add_argument("--drain", type=float, default=10.0, help="at most this long for late messages (10 s)")
    parser.add_argument("--interval", type=float, default=2.0, help="telemetry interval (default 2 s)")
    parser.add_argument("--hosts", type=int, default=125)
    parser.add_argument("--gpus-per-host", type=int, default=8)
    parser.add_argument("--mode", choices=["per-host", "batch"], default="batch")
    parser.add_argument(
        "--via",
        choices=["group_send", "publish"],
        default="group_send",
        help="group_send on one loop (default) or core.live.publish itself (a loop and connection per call)",
    )
    parser.add_argument("--client-procs", type=int, default=2, help="processes holding the clients (default 2)")
    parser.add_argument("--connect-concurrency", type=int, default=20)
    parser.add_argument("--connect-timeout", type=float, default=180.0)
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:54329/portal")
    )
    parser.add_argument("--bench-db", default="portal_bench")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6390/0"))
    parser.add_argument("--redis-db", type=int, default=14, help="Redis database for the channel layer (default 14)")
    parser.add_argument("--keep-db", action="store_true", help="leave the benchmark database in place")
    args = parser.parse_args(argv)
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error('needs PostgreSQL: set DATABASE_URL (eval "$(scripts/services.sh start)")')
    for url in (args.database_url, args.redis_url):
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
            parser.error(f"{url}: this benchmark only talks to servers on 127.0.0.1")

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    bench_db_url = with_db(args.database_url, args.bench_db)
    redis_url = with_redis_db(args.redis_url, args.redis_db)
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DATABASE_URL=bench_db_url,
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        CHANNEL_LAYER="redis",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DEBUG="0",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))

    recreate_database(args.database_url, args.bench_db)
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0, interactive=False)
        cookies = make_operators(max(args.clients))
        from django.db import connections

        connections.close_all()
        over_capacity = OverCapacity()
        logging.getLogger("channels_redis.core").addHandler(over_capacity)
        logging.getLogger("channels_redis.core").setLevel(logging.INFO)
        logging.getLogger("channels_redis.core").propagate = False

        results = []
        for clients in args.clients:
            result = run_once(args, clients, cookies, env, redis_url, over_capacity)
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            recreate_database(args.database_url, args.bench_db, drop_only=True)

    print(
        json.dumps(
            {
                "summary": [
                    {
                        "clients": r["clients"],
                        "mode": r["mode"],
                        "delivered_msgs_per_s": r["delivered_msgs_per_s"],
                        "expected_msgs_per_s": r["expected_msgs_per_s"],
                        "delivered_fraction": r["delivered_fraction"],
                        "staleness_p95_ms": r["staleness_ms"]["p95"],
                        "server_cpu_per_100_clients": r["server_cpu_per_100_clients"],
                        "machine_cpu_busy": r["machine_cpu_busy"],
                    }
                    for r in results
                ],
                "machine_cores": os.cpu_count(),
                "asgi_processes": 1,
                "channel_layer": "channels_redis.core.RedisChannelLayer",
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
