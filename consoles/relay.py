"""The console relay: a small asyncio server beside each host's worker (``manage.py console_relay``).

The portal opens TCP to it and sends one line, ``PORTAL-CONSOLE 1 <grant>\\n`` (at most 4 KiB, within
5 s). The relay verifies the grant (``consoles.grants``: signature, expiry, a host it serves, used
once), finds the running domain's VNC port through its own libvirt connection, connects to that port
on the loopback (the only address it ever dials), answers ``OK\\n`` and then pipes raw bytes both ways
until either side closes. Any refusal is one line ``ERR <reason in words>\\n`` and the connection is
closed. No ORM here; grants and tokens are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable

from consoles.grants import GrantRefused, NonceCache, verify_grant

log = logging.getLogger(__name__)

HELLO = b"PORTAL-CONSOLE 1 "
MAX_LINE = 4096
FIRST_LINE_TIMEOUT_S = 5.0
GUEST_CONNECT_TIMEOUT_S = 2.0
CHUNK = 256 * 1024
#: The only address the relay connects to: guests' VNC servers listen on the host's loopback.
GUEST_ADDRESS = "127.0.0.1"


class GuestUnavailable(Exception):
    """The grant is good but the guest's display cannot be reached; the message says why."""


#: ``locate(host, domain) -> VNC port`` (blocking; runs in a thread), raising GuestUnavailable.
Locator = Callable[[str, str], int]


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); ValueError when malformed."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not an address host:port: {text!r}")
    return host.strip("[]"), int(port)


def libvirt_locator(uris: dict[str, str]) -> Locator:
    """Find a domain's VNC port through libvirt (``uris``: host name → libvirt URI)."""
    from inventory.drivers.base import DriverError
    from inventory.drivers.libvirt import LibvirtDriver

    def locate(host: str, domain: str) -> int:
        try:
            info = LibvirtDriver(uris[host]).domain_info(domain)
        except DriverError as exc:
            raise GuestUnavailable(f"the host's libvirt does not answer ({exc})") from None
        if info is None or info.state != "running":
            raise GuestUnavailable(f"{domain} is not running here")
        if not info.vnc_port:
            raise GuestUnavailable(f"{domain} has no VNC display")
        return info.vnc_port

    return locate


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until ``reader`` ends."""
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()


async def close_writer(writer: asyncio.StreamWriter | None) -> None:
    if writer is None:
        return
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1)


class ConsoleRelay:
    """Serves the consoles of ``hosts`` (host name → libvirt URI). Many connections at once, one event
    loop; libvirt look-ups run in threads so a slow libvirtd never stalls other consoles."""

    def __init__(self, *, key: bytes, hosts: dict[str, str], locate: Locator | None = None):
        self.key = key
        self.hosts = dict(hosts)
        self.locate = locate or libvirt_locator(self.hosts)
        self.nonces = NonceCache()
        self.connections: set[asyncio.Task] = set()
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> asyncio.Server:
        self.server = await asyncio.start_server(self._tracked, host, port, limit=CHUNK)
        return self.server

    async def _tracked(self, reader, writer):
        """One connection's task, remembered so that ``stop`` can end it."""
        task = asyncio.current_task()
        self.connections.add(task)
        try:
            await self.handle(reader, writer)
        finally:
            self.connections.discard(task)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        guest_writer = None
        started = time.monotonic()
        try:
            try:
                grant, guest_reader, guest_writer = await self._open(reader)
            except GuestUnavailable as exc:
                log.info("console from %s refused: %s", peer, exc)
                writer.write(f"ERR {exc}\n".encode())
                await writer.drain()
                return
            log.info("console from %s: desktop %s (%s on %s) opened", peer, grant.desktop_id, grant.domain, grant.host)
            writer.write(b"OK\n")
            await writer.drain()
            to_guest = asyncio.ensure_future(pipe(reader, guest_writer))
            from_guest = asyncio.ensure_future(pipe(guest_reader, writer))
            try:
                await asyncio.wait({to_guest, from_guest}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (to_guest, from_guest):
                    task.cancel()
                await asyncio.gather(to_guest, from_guest, return_exceptions=True)
            log.info(
                "console from %s: desktop %s closed after %.1f s", peer, grant.desktop_id, time.monotonic() - started
            )
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            await close_writer(guest_writer)
            await close_writer(writer)

    async def _open(self, reader: asyncio.StreamReader):
        """Read and check the first line, then connect to the guest; GuestUnavailable says why not."""
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), FIRST_LINE_TIMEOUT_S)
        except TimeoutError:
            raise GuestUnavailable(f"no grant within {FIRST_LINE_TIMEOUT_S:.0f} s") from None
        except (asyncio.LimitOverrunError, ValueError):
            raise GuestUnavailable("the first line is too long") from None
        except asyncio.IncompleteReadError:
            raise GuestUnavailable("the connection ended before the grant") from None
        if len(line) > MAX_LINE:
            raise GuestUnavailable("the first line is too long")
        if not line.startswith(HELLO):
            raise GuestUnavailable("expected PORTAL-CONSOLE 1 <grant>")
        try:
            grant = verify_grant(self.key, line[len(HELLO) :].strip().decode("ascii"), hosts=set(self.hosts))
            self.nonces.use(grant)
        except UnicodeDecodeError:
            raise GuestUnavailable("grant refused: format") from None
        except GrantRefused as exc:
            raise GuestUnavailable(exc.reason) from None
        port = await asyncio.get_running_loop().run_in_executor(None, self.locate, grant.host, grant.domain)
        try:
            guest_reader, guest_writer = await asyncio.wait_for(
                asyncio.open_connection(GUEST_ADDRESS, port, limit=CHUNK), GUEST_CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            raise GuestUnavailable("the guest's VNC server does not answer") from None
        return grant, guest_reader, guest_writer

    async def stop(self) -> None:
        """Stop listening and end every open console."""
        if self.server is not None:
            self.server.close()
        for task in list(self.connections):
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)


async def serve_until_signalled(relay: ConsoleRelay, host: str, port: int, *, ready: Callable[[], None]) -> None:
    """Run ``relay`` on host:port until SIGTERM or SIGINT, then shut it down cleanly."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await relay.start(host, port)
    ready()
    try:
        await stopping.wait()
    finally:
        await relay.stop()


class RelayUnavailable(Exception):
    """The portal could not open a console through the relay; the message says why, in words."""


#: The portal's side: how long it waits for the relay to accept, and then to answer the grant.
CONNECT_TIMEOUT_S = 3.0
ANSWER_TIMEOUT_S = 5.0


async def open_relay(address: tuple[str, int], grant: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The portal's side of the protocol: connect to the relay at ``address``, present ``grant`` and
    return the stream once it answers OK; RelayUnavailable (never hanging past the timeouts) otherwise."""
    host, port = address
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=CHUNK), CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError):
        raise RelayUnavailable(f"the console relay at {host}:{port} does not answer") from None
    try:
        writer.write(HELLO + grant.encode("ascii") + b"\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\n"), ANSWER_TIMEOUT_S)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        await close_writer(writer)
        raise RelayUnavailable(f"the console relay at {host}:{port} did not answer") from None
    if answer == b"OK\n":
        return reader, writer
    await close_writer(writer)
    if answer.startswith(b"ERR "):
        raise RelayUnavailable(answer[4:].decode("utf-8", "replace").strip()[:150])
    raise RelayUnavailable("the console relay answered something unexpected")
