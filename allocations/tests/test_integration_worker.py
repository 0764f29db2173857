"""Integration tier: a real Celery worker process on Redis provisions a VM-lab desktop requested
through the API, and releases it; a worker killed mid-provisioning loses nothing.

Needs PostgreSQL (the worker shares the test database), Redis and the VM lab; CI starts all
three and sets PORTAL_REQUIRE_VM_LAB=1."""

import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from allocations.choices import DesktopStatus
from allocations.models import Desktop
from inventory.drivers.libvirt import lab_serial_log
from inventory.models import GPU, Host
from inventory.services.connect import driver_for
from inventory.tests.test_vm_lab import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


class PortalProcess:
    """A process of the portal's (``argv``, from the repository root) sharing this test's database and
    broker, in its own process group, its output in ``log``."""

    def __init__(self, argv: list[str], log: Path, broker_url: str | None = None, **env_extra: str):
        db = connection.settings_dict
        env = dict(os.environ)
        env.update(
            DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            CELERY_BROKER_URL=broker_url or settings.CELERY_BROKER_URL,
            **env_extra,
        )
        self.log = log
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


class Worker(PortalProcess):
    """A real `celery worker` process consuming one host's queue."""

    def __init__(self, host: Host, log: Path, broker_url: str | None = None):
        name = f"{host.name}-{uuid.uuid4().hex[:4]}@itest"
        argv = [sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", host.queue, "-c", "1", "-n", name]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]
        super().__init__(argv, log, broker_url, CELERY_VISIBILITY_TIMEOUT_S="8", PORTAL_DOMAIN_TYPE="qemu")


def wait_for(desktop_id, statuses, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Desktop.objects.filter(pk=desktop_id).values_list("status", flat=True).first()
        if status in statuses:
            return status
        time.sleep(0.05)
    raise AssertionError(f"desktop {desktop_id} still {status} after {timeout} s")


def test_worker_provisions_and_releases_a_vm_lab_desktop_through_the_api(api, vm_host, member_and_template, tmp_path):
    user, template = member_and_template
    client = api.as_user(user)
    worker = Worker(vm_host, tmp_path / "worker.log")
    latencies = []
    try:
        for _ in range(5):
            started = time.monotonic()
            created = client.post("/api/desktops/", {"template": template.pk, "duration_hours": 1}, format="json")
            assert created.status_code == 201, created.content
            desktop_id = created.json()["id"]
            assert wait_for(desktop_id, {"running", "failed"}) == "running", (tmp_path / "worker.log").read_text()
            latencies.append(time.monotonic() - started)
            desktop = Desktop.objects.get(pk=desktop_id)
            info = driver_for(vm_host).domain_info(desktop.domain_name)
            assert info.state == "running" and info.vnc_port == desktop.vnc_port
            # running only once the guest said so: its banner (naming it) is already in the serial log
            banner = f"LAB-GUEST-READY name={desktop.domain_name}".encode()
            assert banner in Path(lab_serial_log(desktop.domain_name)).read_bytes()
            assert client.post(f"/api/desktops/{desktop_id}/release/").status_code == 200
            assert wait_for(desktop_id, {"released", "failed"}) == "released"
            assert driver_for(vm_host).domain_info(desktop.domain_name) is None
        latencies.sort()
        print(
            f"\nrequest→RUNNING through a real worker on the VM lab: median {statistics.median(latencies):.2f} s, "
            f"max {latencies[-1]:.2f} s over {len(latencies)}"
        )
    finally:
        worker.stop()
    assert driver_for(vm_host).list_mdevs() == []
    assert GPU.objects.get(host=vm_host).instances_used == 0


def test_worker_killed_while_provisioning_loses_nothing(api, vm_host, member_and_template, tmp_path):
    user, template = member_and_template
    worker = Worker(vm_host, tmp_path / "worker1.log")
    created = api.as_user(user).post("/api/desktops/", {"template": template.pk, "duration_hours": 1}, format="json")
    desktop_id = created.json()["id"]
    try:
        wait_for(desktop_id, {"provisioning", "running"}, timeout=60)
        worker.kill()  # SIGKILL to the whole worker, somewhere inside provisioning
        killed_in = Desktop.objects.get(pk=desktop_id).status
        replacement = Worker(vm_host, tmp_path / "worker2.log")
        try:
            final = wait_for(desktop_id, {"running", "failed"}, timeout=90)
            desktop = Desktop.objects.get(pk=desktop_id)
            driver = driver_for(vm_host)
            if final == "running":
                assert driver.domain_info(desktop.domain_name).state == "running"
                assert [m.uuid for m in driver.list_mdevs()] == [str(desktop.mdev_uuid)]
                api.as_user(user).post(f"/api/desktops/{desktop_id}/release/")
                assert wait_for(desktop_id, {"released"}) == "released"
            assert driver.domain_info(desktop.domain_name) is None or final == "running"
            print(f"\nworker killed while the desktop was {killed_in}: ended {final}")
        finally:
            replacement.stop()
    finally:
        worker.stop()
    desktop = Desktop.objects.get(pk=desktop_id)
    assert desktop.status in (DesktopStatus.RELEASED, DesktopStatus.FAILED) and not desktop.holds_capacity
    assert driver_for(vm_host).list_mdevs() == []
    assert GPU.objects.get(host=vm_host).instances_used == 0


def wait_for_reason(desktop_id, reason, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        desktop = Desktop.objects.get(pk=desktop_id)
        if desktop.status_reason == reason:
            return desktop
        time.sleep(0.05)
    raise AssertionError(f"desktop {desktop_id} still says {desktop.status_reason!r} after {timeout} s")


def test_a_rebooted_vm_lab_desktop_is_restarting_until_its_guest_is_up_again(
    api, vm_host, member_and_template, tmp_path
):
    user, template = member_and_template
    client = api.as_user(user)
    worker = Worker(vm_host, tmp_path / "worker.log")
    try:
        desktop_id = client.post(
            "/api/desktops/", {"template": template.pk, "duration_hours": 1}, format="json"
        ).json()["id"]
        assert wait_for(desktop_id, {"running", "failed"}) == "running", (tmp_path / "worker.log").read_text()
        desktop = Desktop.objects.get(pk=desktop_id)
        serial = Path(lab_serial_log(desktop.domain_name))
        assert client.post(f"/api/desktops/{desktop_id}/reboot/").status_code == 200
        wait_for_reason(desktop_id, "the guest is restarting")
        desktop = wait_for_reason(desktop_id, "")  # up again: the new QEMU's log holds this boot's banner
        assert desktop.status == DesktopStatus.RUNNING and b"LAB-GUEST-READY" in serial.read_bytes()
        assert driver_for(vm_host).domain_info(desktop.domain_name).vnc_port == desktop.vnc_port
        assert client.post(f"/api/desktops/{desktop_id}/release/").status_code == 200
        assert wait_for(desktop_id, {"released", "failed"}) == "released"
    finally:
        worker.stop()
