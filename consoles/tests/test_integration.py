"""Integration tier: a console through the real ASGI server (Daphne, on PostgreSQL) whose logs must
never hold the ticket, and the real relay in front of a real VM-lab guest's VNC server."""

import asyncio
import json
import os
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from consoles.grants import sign_grant
from consoles.relay import open_relay
from consoles.tests.conftest import RELAY_KEY, RFB_VERSION, free_port, start_relay
from core.tests.http import wait_for_healthz
from inventory.drivers.base import DomainSpec
from inventory.services.connect import driver_for
from inventory.tests.test_vm_lab import vm_host  # noqa: F401 (a fixture: a VM-lab host, or skipped)
from portal.tests.browser.conftest import Process, _database_url
from tenancy.tokens import issue_token

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def daphne(tmp_path):
    """Daphne serving portal.asgi on this test database (PostgreSQL: another process must see the rows),
    with its access log and every Python log line at DEBUG in one file."""
    if connection.vendor != "postgresql":
        pytest.skip("Daphne shares the test database: needs PostgreSQL (DATABASE_URL)")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DATABASE_URL=_database_url(connection.settings_dict),
        CHANNEL_LAYER="memory",
        SECRET_KEY=settings.SECRET_KEY,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DEBUG="0",
        PORTAL_HTTPS="0",
        LOG_LEVEL="DEBUG",
        PORTAL_CONSOLE_RELAY_KEY=RELAY_KEY,
        PYTHONUNBUFFERED="1",
    )
    argv = [str(ROOT / ".venv/bin/daphne"), "-b", "127.0.0.1", "-p", str(port), "-v", "2", "--access-log", "-"]
    server = Process([*argv, "portal.asgi:application"], env=env, log=ARTIFACTS / "daphne-console.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_healthz(base, exited=lambda: server.proc.poll() is not None, output=server.output)
        yield base, server
    finally:
        server.stop()


def test_the_ticket_never_reaches_daphnes_or_the_portals_logs(daphne, console_desktop, tenant_member, relay):
    from websockets.sync.client import connect

    base, server = daphne
    _, key = issue_token(tenant_member, actor=tenant_member, name="console test")
    request = urllib.request.Request(
        f"{base}/api/desktops/{console_desktop.pk}/console/", method="POST", headers={"Authorization": f"Token {key}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
        ws_url = json.load(response)["ws_url"]
    token = ws_url.split("ticket=", 1)[1]
    with connect(ws_url, origin=base, open_timeout=10) as ws:
        assert ws.recv(timeout=5) == RFB_VERSION
        ws.send(b"RFB 003.008\n")
        assert ws.recv(timeout=5) == b"RFB 003.008\n"
    time.sleep(0.5)
    log = server.output()
    assert "/ws/console/" in log  # the access log did see the console's connection...
    assert "console of desktop" in log  # ...and the portal's own log lines are in here too
    assert token not in log  # ...but never its ticket
    assert token not in relay.output()


def test_the_relay_reaches_a_real_lab_guests_vnc(vm_host, tmp_path):  # noqa: F811
    driver = driver_for(vm_host)
    name = f"itest-{uuid.uuid4().hex[:8]}"
    spec = DomainSpec(name=name, uuid=str(uuid.uuid4()), vcpus=1, memory_mib=256, disk_image="/unused.qcow2")
    relay = start_relay(tmp_path, hosts=(vm_host.name,), uri="qemu:///system")  # as `make run` starts it
    try:
        driver.define_domain(spec)
        driver.start_domain(name)

        async def through_relay():
            grant = sign_grant(RELAY_KEY.encode(), host=vm_host.name, domain=name, desktop_id=0)
            reader, writer = await open_relay(("127.0.0.1", relay.port), grant)
            try:
                return await asyncio.wait_for(reader.readexactly(12), 10)
            finally:
                writer.close()

        assert asyncio.run(through_relay()) == b"RFB 003.008\n"
    finally:
        relay.stop()
        driver.destroy_domain(name)
        driver.undefine_domain(name)
