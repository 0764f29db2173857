"""What console tests run against: a real TCP "guest" that speaks a few bytes of RFB (its version
string on connect, then an echo of whatever it receives), and the real relay as its own process
(``manage.py console_relay``) finding that guest's VNC port through libvirt's test driver, as it finds
a lab guest's through qemu:///system."""

from __future__ import annotations

import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.tests.http import free_port

ROOT = Path(__file__).resolve().parents[2]
RELAY_KEY = "console-tests-relay-key"
SERVED_HOSTS = ("lab-a40", "lab-a16")
#: Domains in the relay's test-driver node: one whose VNC port is the fake guest, one whose port is dead.
GUEST_DOMAIN = "console-guest"
DEAD_DOMAIN = "console-dead"
RFB_VERSION = b"RFB 003.008\n"


class _Guest(socketserver.BaseRequestHandler):
    def handle(self):
        self.server.connections += 1
        self.request.sendall(RFB_VERSION)
        while data := self.request.recv(65536):
            self.request.sendall(data)


class FakeGuest(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many consoles connect at once in the tests
    connections = 0


@pytest.fixture(scope="session")
def fake_guest():
    server = FakeGuest(("127.0.0.1", 0), _Guest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


NODE_XML = """<node>
  <domain type='test'><name>{guest}</name><memory>65536</memory><os><type>hvm</type></os>
    <devices><graphics type='vnc' port='{guest_port}' autoport='no' listen='127.0.0.1'/></devices></domain>
  <domain type='test'><name>{dead}</name><memory>65536</memory><os><type>hvm</type></os>
    <devices><graphics type='vnc' port='{dead_port}' autoport='no' listen='127.0.0.1'/></devices></domain>
</node>
"""


@dataclass
class RelayProcess:
    proc: subprocess.Popen
    address: str
    log: Path

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(timeout=10)


def start_relay(directory: Path, guest_port: int = 0, *, hosts=SERVED_HOSTS, uri: str = "") -> RelayProcess:
    """``manage.py console_relay`` on a free port, serving ``hosts`` from libvirt ``uri`` (default: a
    test-driver node whose domains' VNC ports are ``guest_port`` and a dead one)."""
    directory.mkdir(parents=True, exist_ok=True)
    if not uri:
        node = directory / "relay-node.xml"
        node.write_text(
            NODE_XML.format(guest=GUEST_DOMAIN, guest_port=guest_port, dead=DEAD_DOMAIN, dead_port=free_port())
        )
        uri = f"test://{node}"
    address = f"127.0.0.1:{free_port()}"
    log = directory / f"relay-{address.rsplit(':', 1)[1]}.log"
    env = {**os.environ, "PORTAL_CONSOLE_RELAY_KEY": RELAY_KEY, "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "DEBUG"}
    argv = [sys.executable, "manage.py", "console_relay", "--listen", address]
    argv += ["--uri", uri, "--hosts", ",".join(hosts)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    relay = RelayProcess(proc=proc, address=address, log=log)
    deadline = time.monotonic() + 30
    while "console relay listening" not in relay.output():
        if proc.poll() is not None or time.monotonic() > deadline:
            relay.stop()
            pytest.fail(f"the console relay did not start:\n{relay.output()[-3000:]}")
        time.sleep(0.05)
    return relay


@pytest.fixture(scope="session")
def relay(fake_guest, tmp_path_factory):
    """The relay every console test shares (the grant key is ``RELAY_KEY``)."""
    process = start_relay(tmp_path_factory.mktemp("relay"), fake_guest.server_address[1])
    yield process
    process.stop()


@pytest.fixture
def relay_key(settings):
    settings.PORTAL_CONSOLE_RELAY_KEY = RELAY_KEY
    return RELAY_KEY.encode()


@pytest.fixture
def running_desktop(lab, catalog, tenant, tenant_member):
    """alice's desktop, requested and provisioned on the test-driver lab host lab-a40: running."""
    from allocations import tasks
    from allocations.models import Desktop
    from allocations.services.request import request_desktop
    from allocations.tests.factories import make_template
    from inventory.models import VGPUProfile

    lab("lab-a40=A40x2")
    tenant.quota.max_framebuffer_mib = 100000
    tenant.quota.save()
    template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant])
    desktop = request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=1, queue_provisioning=False)
    tasks.provision.apply(args=[desktop.pk]).get()
    desktop = Desktop.objects.select_related("host", "tenant").get(pk=desktop.pk)
    assert desktop.status == "running", desktop.status_reason
    return desktop


@pytest.fixture
def console_desktop(running_desktop, relay, relay_key):
    """The running desktop, its host's console relay the test relay, its display the fake guest's."""
    from allocations.models import Desktop
    from inventory.models import Host

    Host.objects.filter(pk=running_desktop.host_id).update(console_relay=relay.address)
    Desktop.objects.filter(pk=running_desktop.pk).update(domain_name=GUEST_DOMAIN)
    return Desktop.objects.select_related("host", "tenant").get(pk=running_desktop.pk)
