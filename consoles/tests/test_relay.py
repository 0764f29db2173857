"""The console relay as its own process (``manage.py console_relay``): grants in, the guest's VNC out.

The relay finds the guest's VNC port through libvirt (here the test driver; qemu:///system on a host),
so only a valid, fresh, unused grant for a host it serves reaches a guest."""

import asyncio
import socket
import time

import pytest

from consoles.grants import sign_grant
from consoles.relay import RelayUnavailable, open_relay
from consoles.tests.conftest import DEAD_DOMAIN, GUEST_DOMAIN, RELAY_KEY, RFB_VERSION, start_relay

KEY = RELAY_KEY.encode()


def grant(**kwargs) -> str:
    values = {"host": "lab-a40", "domain": GUEST_DOMAIN, "desktop_id": 7, "ttl_s": 30}
    values.update(kwargs)
    key = values.pop("key", KEY)
    return sign_grant(key, **values)


def present(relay, token: str) -> tuple[bytes, socket.socket]:
    """Send the grant line; the relay's answer line, and the socket (still open after OK)."""
    sock = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
    sock.sendall(b"PORTAL-CONSOLE 1 " + token.encode() + b"\n")
    answer = b""
    while not answer.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        answer += chunk
    return answer, sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def assert_refused(relay, token: str, reason: str) -> None:
    answer, sock = present(relay, token)
    with sock:
        assert answer == f"ERR {reason}\n".encode()
        assert sock.recv(100) == b""  # and closed


def test_a_good_grant_reaches_the_guests_vnc_and_bytes_flow_both_ways(relay):
    answer, sock = present(relay, grant())
    with sock:
        assert answer == b"OK\n"
        assert recv_exactly(sock, 12) == RFB_VERSION
        sock.sendall(b"RFB 003.008\n\x01")
        assert recv_exactly(sock, 13) == b"RFB 003.008\n\x01"


def test_a_forged_grant_is_refused(relay):
    assert_refused(relay, grant(key=b"not-the-key"), "grant refused: signature")
    body, _ = grant().split(".")
    assert_refused(relay, body + "." + "ab" * 32, "grant refused: signature")


def test_an_expired_grant_is_refused(relay):
    assert_refused(relay, grant(now=time.time() - 60), "grant refused: expired")


def test_a_replayed_grant_is_refused(relay):
    token = grant()
    answer, sock = present(relay, token)
    sock.close()
    assert answer == b"OK\n"
    assert_refused(relay, token, "grant refused: replayed")


def test_a_host_the_relay_does_not_serve_is_refused(relay):
    assert_refused(relay, grant(host="gpu-elsewhere"), "this relay does not serve host gpu-elsewhere")


def test_a_domain_not_running_there_is_refused(relay):
    assert_refused(relay, grant(domain="desktop-12"), "desktop-12 is not running here")


def test_a_guest_whose_vnc_does_not_answer_is_refused(relay):
    assert_refused(relay, grant(domain=DEAD_DOMAIN), "the guest's VNC server does not answer")


def test_garbage_instead_of_a_grant_is_refused(relay):
    with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert sock.recv(100) == b"ERR expected PORTAL-CONSOLE 1 <grant>\n"


def test_the_relay_never_logs_a_grant(relay):
    token = grant()
    present(relay, token)[1].close()
    assert_refused(relay, token, "grant refused: replayed")
    time.sleep(0.2)
    log = relay.output()
    assert "opened" in log and "replayed" in log
    assert token not in log and token.split(".")[1] not in log


def test_many_consoles_at_once(relay):
    async def one(i):
        reader, writer = await open_relay(("127.0.0.1", relay.port), grant(desktop_id=i))
        assert await reader.readexactly(12) == RFB_VERSION
        payload = f"console {i}\n".encode() * 100
        writer.write(payload)
        await writer.drain()
        assert await reader.readexactly(len(payload)) == payload
        writer.close()

    async def all_of_them():
        await asyncio.gather(*(one(i) for i in range(60)))

    asyncio.run(all_of_them())


def test_the_portal_side_reports_a_refusal_and_a_relay_that_is_down(relay):
    async def attempt(address, token):
        started = time.monotonic()
        with pytest.raises(RelayUnavailable) as caught:
            await open_relay(address, token)
        return str(caught.value), time.monotonic() - started

    message, _ = asyncio.run(attempt(("127.0.0.1", relay.port), grant(host="gpu-9")))
    assert message == "this relay does not serve host gpu-9"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    message, took = asyncio.run(attempt(("127.0.0.1", dead), grant()))
    assert message == f"the console relay at 127.0.0.1:{dead} does not answer" and took < 1


def test_sigterm_ends_open_consoles_and_stops_cleanly(fake_guest, tmp_path):
    own = start_relay(tmp_path, fake_guest.server_address[1])
    try:
        answer, sock = present(own, grant())
        assert answer == b"OK\n" and recv_exactly(sock, 12) == RFB_VERSION
        started = time.monotonic()
        assert own.stop(timeout=5) == 0
        assert time.monotonic() - started < 5
        assert sock.recv(100) == b""  # the open console was ended, not left hanging
        sock.close()
        assert "console relay stopped" in own.output()
    finally:
        own.stop()
