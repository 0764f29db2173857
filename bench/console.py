"""Consoles through the portal: 1, 10 and 50 at once through one ASGI process, side by side with a direct
VNC connection to the same guests.

Each console is a real path as deployed: a ticket from ``POST /api/desktops/<id>/console/`` (session
auth), the websocket at its ``ws_url`` on a Daphne process, the console relay (``manage.py
console_relay``, its own process) with a signed grant, and the guest's VNC server. The guests are
synthetic RFB servers in this process (RFB 3.8, no auth, raw encoding) whose screens change on their
own (a moving band, every update) and on each key press (a marker square), so the figures are the
relay's cost rather than a VM's: 50 TCG guests do not fit a 2-core machine. The relay finds them the
way it finds real guests, through libvirt: a test-driver "host" (``test:///<file>``) whose running
domains' ``<graphics type='vnc'>`` ports are the synthetic servers.

Printed per N (JSON lines), then a summary: ticket → first framebuffer update p50/p95 (ms); relayed
throughput per console and its ratio to a direct connection to the same guest (full-screen updates
for ``--seconds``); a key event → the screen update showing it, relayed and direct, p50/p95, and the
added p95; CPU seconds per console per second of the Daphne and relay processes; bytes each way;
consoles that failed or dropped.

    eval "$(scripts/services.sh start)"
    .venv/bin/python bench/console.py --consoles 1 10 50 --seconds 5

The benchmark makes its own database (``portal_bench_console``, dropped at the end) next to the one in
DATABASE_URL, uses Redis database 13 of REDIS_URL for the channel layer, listens and connects on
127.0.0.1 only, and stops its processes itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ws_fanout import (  # noqa: E402  (bench/ is not a package)
    LOG_DIR,
    Daphne,
    cpu_seconds,
    free_port,
    recreate_database,
    signed_in_session,
    with_db,
    with_redis_db,
)

DB_NAME = "portal_bench_console"
HOST_NAME = "bench-host"
WIDTH, HEIGHT = 640, 480
BAND = 48  # rows of the moving band each incremental update sends
MARK = 16  # the key marker square


# --- the synthetic guests ----------------------------------------------------------------------------


class Guest:
    """One RFB 3.8 server: no authentication, raw encoding, 32 bpp. Incremental requests are answered
    with the moving band (or the key marker first, when a key came since); full requests with the whole
    screen. The first pixel of the marker carries the number of the key press it shows."""

    def __init__(self, index: int):
        self.index = index
        self.server = None
        self.port = 0
        self.frame = bytes(WIDTH * HEIGHT * 4)

    async def start(self):
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def serve(self, reader, writer):
        keys = asyncio.Queue()
        tick = 0
        try:
            writer.write(b"RFB 003.008\n")
            await reader.readexactly(12)
            writer.write(b"\x01\x01")  # one security type: None
            await reader.readexactly(1)
            writer.write(struct.pack(">I", 0))
            await reader.readexactly(1)  # ClientInit
            name = f"bench-guest-{self.index}".encode()
            pixel = struct.pack(">BBBBHHHBBBxxx", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
            writer.write(struct.pack(">HH", WIDTH, HEIGHT) + pixel + struct.pack(">I", len(name)) + name)
            await writer.drain()
            while True:
                kind = (await reader.readexactly(1))[0]
                if kind == 0:  # SetPixelFormat
                    await reader.readexactly(19)
                elif kind == 2:  # SetEncodings
                    count = struct.unpack(">xH", await reader.readexactly(3))[0]
                    await reader.readexactly(4 * count)
                elif kind == 3:  # FramebufferUpdateRequest
                    incremental = (await reader.readexactly(9))[0]
                    if not incremental:
                        rects = [(0, 0, WIDTH, HEIGHT, self.frame)]
                    elif not keys.empty():
                        number = keys.get_nowait()
                        rects = [(0, 0, MARK, MARK, struct.pack("<I", number) * (MARK * MARK))]
                    else:
                        tick += 1
                        top = (tick * BAND) % (HEIGHT - BAND)
                        shade = bytes([tick % 256, (tick * 7) % 256, 200, 0])
                        rects = [(0, top, WIDTH, BAND, shade * (WIDTH * BAND))]
                    out = [struct.pack(">BxH", 0, len(rects))]
                    for x, y, w, h, pixels in rects:
                        out.append(struct.pack(">HHHHi", x, y, w, h, 0) + pixels)
                    writer.write(b"".join(out))
                    await writer.drain()
                elif kind == 4:  # KeyEvent: down, pad, key
                    down, key = struct.unpack(">BxxI", await reader.readexactly(7))
                    if down:
                        keys.put_nowait(key)
                elif kind == 5:  # PointerEvent
                    await reader.readexactly(5)
                elif kind == 6:  # ClientCutText
                    length = struct.unpack(">xxxI", await reader.readexactly(7))[0]
                    await reader.readexactly(length)
                else:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def lab_xml(guests: list[Guest]) -> str:
    """A libvirt test-driver node whose running domains desktop-<i> have their VNC on the guests' ports."""
    domains = "".join(
        f"""
  <domain type='test'>
    <name>desktop-{g.index}</name>
    <memory>262144</memory><vcpu>1</vcpu>
    <os><type arch='x86_64'>hvm</type></os>
    <devices><graphics type='vnc' port='{g.port}' autoport='no' listen='127.0.0.1'/></devices>
  </domain>"""
        for g in guests
    )
    return f"""<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>64</cores><threads>1</threads><mhz>2000</mhz></cpu>
  <memory>268435456</memory>{domains}
</node>"""


# --- an RFB client over a stream (TCP) or a websocket -----------------------------------------------


class TCPStream:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.received = 0

    async def read(self, n: int) -> bytes:
        data = await self.reader.readexactly(n)
        self.received += n
        return data

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self):
        self.writer.close()


class WSStream:
    """The websocket's binary frames as a byte stream."""

    def __init__(self, ws):
        self.ws = ws
        self.buffer = bytearray()
        self.received = 0

    async def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            message = await self.ws.recv()
            if isinstance(message, str):
                raise RuntimeError(f"text frame on a console: {message[:80]}")
            self.buffer += message
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        self.received += n
        return data

    async def write(self, data: bytes) -> None:
        await self.ws.send(data)

    async def close(self):
        await self.ws.close()


async def handshake(stream) -> None:
    version = await stream.read(12)
    if not version.startswith(b"RFB 003."):
        raise RuntimeError(f"not an RFB server: {version!r}")
    await stream.write(b"RFB 003.008\n")
    count = (await stream.read(1))[0]
    types = await stream.read(count)
    if 1 not in types:
        raise RuntimeError(f"no 'None' security type: {list(types)}")
    await stream.write(b"\x01")
    if struct.unpack(">I", await stream.read(4))[0] != 0:
        raise RuntimeError("security handshake failed")
    await stream.write(b"\x01")  # ClientInit: shared
    header = await stream.read(24)
    await stream.read(struct.unpack(">I", header[20:24])[0])
    await stream.write(struct.pack(">BxHi", 2, 1, 0))  # SetEncodings: raw


def request(incremental: bool) -> bytes:
    return struct.pack(">BBHHHH", 3, int(incremental), 0, 0, WIDTH, HEIGHT)


async def read_update(stream) -> list[bytes]:
    """One FramebufferUpdate: the first 4 bytes of each rectangle's pixels."""
    kind = (await stream.read(1))[0]
    if kind != 0:
        raise RuntimeError(f"unexpected server message {kind}")
    count = struct.unpack(">xH", await stream.read(3))[0]
    heads = []
    for _ in range(count):
        _x, _y, w, h, encoding = struct.unpack(">HHHHi", await stream.read(12))
        if encoding != 0:
            raise RuntimeError(f"unexpected encoding {encoding}")
        pixels = await stream.read(w * h * 4)
        heads.append(pixels[:4])
    return heads


async def measure(stream, seconds: float, keys: int) -> dict:
    """Throughput of full-screen updates for ``seconds``, then ``keys`` key presses → marker latency."""
    started, before = time.perf_counter(), stream.received
    frames = 0
    while time.perf_counter() - started < seconds:
        await stream.write(request(False))
        await read_update(stream)
        frames += 1
    elapsed = time.perf_counter() - started
    throughput = (stream.received - before) / elapsed
    latencies = []
    for number in range(1, keys + 1):
        sent = time.perf_counter()
        await stream.write(struct.pack(">BBxxI", 4, 1, number) + struct.pack(">BBxxI", 4, 0, number))
        while True:
            await stream.write(request(True))
            heads = await read_update(stream)
            if heads and heads[0] == struct.pack("<I", number):
                latencies.append((time.perf_counter() - sent) * 1000)
                break
    return {"bytes_per_s": throughput, "frames": frames, "key_ms": latencies}


# --- the portal side --------------------------------------------------------------------------------


def prepare(count: int, relay: str, uri: str) -> list[dict]:
    """Members, their running desktops on the bench host (its console relay at ``relay``), a signed-in
    session each. Returns [{desktop, session}]."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from allocations.models import Desktop, DesktopTemplate, Quota
    from inventory.models import Host
    from tenancy.models import Membership, Tenant
    from tenancy.roles import Role

    host = Host.objects.create(
        name=HOST_NAME, libvirt_uri=uri, state="online", cpu_cores=64, memory_mib=262144, console_relay=relay
    )
    tenant = Tenant.objects.create(name="Bench", slug="bench")
    Quota.objects.create(tenant=tenant, max_desktops=count)
    template = DesktopTemplate.objects.create(name="bench", vcpus=1, memory_mib=256, disk_image="none", gpu_count=0)
    User = get_user_model()
    rows = []
    now = timezone.now()
    for i in range(1, count + 1):
        user = User.objects.create_user(f"bench-{i:03d}")
        Membership.objects.create(user=user, tenant=tenant, role=Role.TENANT_MEMBER)
        desktop = Desktop.objects.create(
            name=f"bench {i}",
            tenant=tenant,
            owner=user,
            template=template,
            gpu_count=0,
            vcpus=1,
            memory_mib=256,
            framebuffer_mib=0,
            duration_hours=1,
            status="running",
            holds_capacity=False,
            host=host,
            domain_name=f"desktop-{i}",
            started_at=now,
            expires_at=now + timezone.timedelta(hours=1),
        )
        rows.append({"desktop": desktop.pk, "session": signed_in_session(user)})
    return rows


async def ticket(base: str, desktop: int, session: str) -> str:
    """POST the ticket request (session cookie + CSRF double submit) with asyncio's own streams."""
    csrf = "b" * 32
    host, port = base.split("//")[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        (
            f"POST /api/desktops/{desktop}/console/ HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Cookie: sessionid={session}; csrftoken={csrf}\r\nX-CSRFToken: {csrf}\r\n"
            f"Referer: {base}/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if b" 201 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(f"ticket refused: {head.splitlines()[0]!r} {body[:200]!r}")
    if b"chunked" in head.lower():
        body = body.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
    return json.loads(body)["ws_url"]


async def direct_path(guest: Guest, seconds: float, keys: int) -> dict:
    """A VNC client straight to the guest."""
    reader, writer = await asyncio.open_connection("127.0.0.1", guest.port)
    stream = TCPStream(reader, writer)
    await handshake(stream)
    figures = await measure(stream, seconds, keys)
    await stream.close()
    return figures


async def relay_path(relay_address, guest: Guest, seconds: float, keys: int) -> dict:
    """Through the relay alone (the portal's side of its protocol, no websocket): where the time goes."""
    from django.conf import settings

    from consoles.grants import sign_grant
    from consoles.relay import open_relay

    grant = sign_grant(
        settings.PORTAL_CONSOLE_RELAY_KEY.encode(), host=HOST_NAME, domain=f"desktop-{guest.index}", desktop_id=0
    )
    stream = TCPStream(*await open_relay(relay_address, grant))
    await handshake(stream)
    figures = await measure(stream, seconds, keys)
    await stream.close()
    return figures


async def open_console(base: str, origin: str, row: dict) -> tuple[WSStream, dict]:
    """Ticket, websocket, RFB handshake, first full framebuffer update: the stream and the times (ms)."""
    from websockets.asyncio.client import connect

    marks = [time.perf_counter()]
    url = await ticket(base, row["desktop"], row["session"])
    marks.append(time.perf_counter())
    ws = await connect(
        url,
        origin=origin,
        additional_headers={"Cookie": f"sessionid={row['session']}"},
        compression=None,
        max_size=None,
        open_timeout=60,
    )
    stream = WSStream(ws)
    await handshake(stream)
    marks.append(time.perf_counter())
    await stream.write(request(False))
    await read_update(stream)
    marks.append(time.perf_counter())
    ms = [(later - earlier) * 1000 for earlier, later in zip(marks, marks[1:], strict=False)]
    return stream, {"ticket": ms[0], "websocket_and_rfb_handshake": ms[1], "first_full_frame": ms[2], "total": sum(ms)}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 2) if values else float("nan")


async def run_level(count, base, origin, relay_address, rows, guests, seconds, keys, daphne_pid, relay_pid) -> dict:
    """The three paths one after another, each with all ``count`` consoles at once (side by side in one
    run); the server CPU is taken over the relayed phase."""
    picked = list(range(count))

    async def every(make):
        results = await asyncio.gather(*(make(i) for i in picked), return_exceptions=True)
        return results

    direct = await every(lambda i: direct_path(guests[i], seconds, keys))
    relay_only = await every(lambda i: relay_path(relay_address, guests[i], seconds, keys))
    opened = await every(lambda i: open_console(base, origin, rows[i]))
    streams = [o[0] if isinstance(o, tuple) else None for o in opened]
    cpu_before = {p: cpu_seconds(p) for p in (daphne_pid, relay_pid, os.getpid())}
    wall = time.perf_counter()
    relayed = await every(
        lambda i: measure(streams[i], seconds, keys) if streams[i] else asyncio.sleep(0, result=opened[i])
    )
    wall = time.perf_counter() - wall
    cpu = {p: cpu_seconds(p) - cpu_before[p] for p in cpu_before}
    await asyncio.gather(*(s.close() for s in streams if s), return_exceptions=True)
    good = [
        i
        for i in picked
        if all(isinstance(r[i], dict) for r in (direct, relay_only, relayed)) and isinstance(opened[i], tuple)
    ]
    failed = [
        repr(r[i])[:200]
        for i in picked
        for r in (direct, relay_only, opened, relayed)
        if isinstance(r[i], BaseException)
    ]
    firsts = [opened[i][1] for i in good]

    def rate(results):
        return round(statistics.median([results[i]["bytes_per_s"] for i in good]) / 2**20, 2) if good else None

    def ratio(results):
        return round(statistics.median([results[i]["bytes_per_s"] / direct[i]["bytes_per_s"] for i in good]), 3)

    relayed_keys = [ms for i in good for ms in relayed[i]["key_ms"]]
    direct_keys = [ms for i in good for ms in direct[i]["key_ms"]]
    return {
        "consoles": count,
        "ok": len(good),
        "failed": count - len(good),
        "failures": failed[:3],
        "ticket_to_first_update_ms": {
            "p50": pct([f["total"] for f in firsts], 0.5),
            "p95": pct([f["total"] for f in firsts], 0.95),
            "median_parts": {
                k: round(statistics.median([f[k] for f in firsts]), 1)
                for k in ("ticket", "websocket_and_rfb_handshake", "first_full_frame")
            }
            if firsts
            else None,
        },
        "mib_per_s_per_console": {"direct": rate(direct), "relay_only": rate(relay_only), "relayed": rate(relayed)},
        "ratio_to_direct_median": {"relay_only": ratio(relay_only), "relayed": ratio(relayed)} if good else None,
        "key_to_update_ms": {
            "relayed_p50": pct(relayed_keys, 0.5),
            "relayed_p95": pct(relayed_keys, 0.95),
            "direct_p50": pct(direct_keys, 0.5),
            "direct_p95": pct(direct_keys, 0.95),
            "added_p95": round(pct(relayed_keys, 0.95) - pct(direct_keys, 0.95), 2),
        },
        "relayed_phase_cpu_cores": {
            "asgi_server": round(cpu[daphne_pid] / wall, 3),
            "relay": round(cpu[relay_pid] / wall, 3),
            "this_process_clients_and_guests": round(cpu[os.getpid()] / wall, 3),
        },
        "relayed_phase_cpu_ms_per_console_per_s": {
            "asgi_server": round(1000 * cpu[daphne_pid] / wall / count, 1),
            "relay": round(1000 * cpu[relay_pid] / wall / count, 1),
        },
        "relayed_phase_wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--consoles", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput window per console and path")
    parser.add_argument("--keys", type=int, default=20, help="key presses per console and path")
    args = parser.parse_args()
    base_db = os.environ.get("DATABASE_URL", "")
    if not base_db.startswith("postgres"):
        sys.exit('set DATABASE_URL to a PostgreSQL server (eval "$(scripts/services.sh start)")')
    redis = with_redis_db(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), 13)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    recreate_database(base_db, DB_NAME)
    env = {**os.environ, "DATABASE_URL": with_db(base_db, DB_NAME), "REDIS_URL": redis, "LOG_LEVEL": "WARNING"}
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    most = max(args.consoles)

    async def everything():
        guests = [Guest(i) for i in range(1, most + 1)]
        for guest in guests:
            await guest.start()
        lab = Path(tempfile.mkdtemp(prefix="bench-console-")) / "lab.xml"
        lab.write_text(lab_xml(guests))
        relay_port, web_port = free_port(), free_port()
        relay_log = LOG_DIR / "console-relay.log"
        relay = subprocess.Popen(
            [sys.executable, "manage.py", "console_relay", "--listen", f"127.0.0.1:{relay_port}"]
            + ["--uri", f"test://{lab}", "--hosts", HOST_NAME],
            cwd=ROOT,
            env=env,
            stdout=open(relay_log, "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        rows = await asyncio.to_thread(prepare, most, f"127.0.0.1:{relay_port}", f"test://{lab}")
        daphne = await asyncio.to_thread(Daphne, web_port, env, LOG_DIR / "console-daphne.log")
        base, origin = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{web_port}"
        try:
            # one console first, unmeasured: the server's first request loads what every later one reuses
            warm, _ = await open_console(base, origin, rows[0])
            await warm.close()
            reports = []
            for count in args.consoles:
                report = await run_level(
                    count,
                    base,
                    origin,
                    ("127.0.0.1", relay_port),
                    rows,
                    guests,
                    args.seconds,
                    args.keys,
                    daphne.proc.pid,
                    relay.pid,
                )
                print(json.dumps(report), flush=True)
                reports.append(report)
            print(json.dumps({"summary": reports, "daphne_errors": daphne.errors()[:5]}, indent=1))
        finally:
            daphne.stop()
            relay.terminate()
            relay.wait(timeout=10)

    try:
        asyncio.run(everything())
    finally:
        from django.db import connections

        connections.close_all()
        recreate_database(base_db, DB_NAME, drop_only=True)


if __name__ == "__main__":
    main()
