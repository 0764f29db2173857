"""Integration tier: real guests through a real libvirtd (the VM lab), via the same driver code.

Needs `scripts/vmlab.sh start` (CI runs it and sets PORTAL_REQUIRE_VM_LAB=1, so a broken lab
fails here instead of skipping)."""

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import libvirt
import pytest

from inventory.drivers.base import DomainSpec
from inventory.drivers.libvirt import LAB_SERIAL_DIR, forget_connection
from inventory.services.connect import driver_for
from inventory.services.lab import LabHostSpec, create_lab_host

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
ROOT = Path(__file__).resolve().parents[2]


def vm_lab_available() -> str:
    try:
        libvirt.open("qemu:///system").close()
    except libvirt.libvirtError as exc:
        return f"qemu:///system unreachable: {exc}"
    if not (ROOT / "var/lab/payload/vmlinuz").exists():
        return "no guest payload (scripts/vmlab.sh start)"
    return ""


@pytest.fixture
def vm_host(catalog, tmp_path):
    missing = vm_lab_available()
    if missing:
        if os.environ.get("PORTAL_REQUIRE_VM_LAB") == "1":
            pytest.fail(f"the VM lab is required here: {missing}")
        pytest.skip(missing)
    lab_dir = tmp_path / "lab"
    lab_dir.mkdir()
    (lab_dir / "payload").symlink_to(ROOT / "var/lab/payload")
    host = create_lab_host(LabHostSpec.parse(f"itest-{uuid.uuid4().hex[:6]}=A40x1"), directory=lab_dir, flavour="vm")
    yield host
    forget_connection(f"test://{host.lab_xml}")


def rfb_banner(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        data = b""
        while len(data) < 12:
            chunk = sock.recv(12 - len(data))
            if not chunk:
                break
            data += chunk
        return data


def qemu_running(name: str) -> bool:
    return subprocess.run(["pgrep", "-f", f"guest={name}"], capture_output=True).returncode == 0


def test_vm_lab_guest_boots_serves_vnc_and_leaves_nothing_behind(vm_host):
    driver = driver_for(vm_host)
    gpu = driver.list_gpus()[0]
    type_id = next(t.type_id for t in gpu.mdev_types if t.profile_name == "A40-8Q")
    name = f"itest-{uuid.uuid4().hex[:8]}"
    mdev = driver.create_mdev(gpu.pci_address, type_id)
    spec = DomainSpec(
        name=name,
        uuid=str(uuid.uuid4()),
        vcpus=8,
        memory_mib=16384,
        disk_image="/unused.qcow2",
        mdev_uuids=(mdev.uuid,),
        metadata={"desktop": 0},
    )
    started = time.monotonic()
    try:
        driver.define_domain(spec)
        info = driver.start_domain(name)
        running_s = time.monotonic() - started
        assert info.state == "running" and info.vnc_port and info.vnc_port >= 5900
        assert info.mdev_uuids == (mdev.uuid,)  # recorded in metadata: no VFIO in the lab
        assert rfb_banner(info.vnc_port).startswith(b"RFB 003.")
        serial = Path(LAB_SERIAL_DIR) / f"{name}-serial.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and b"LAB-GUEST-READY" not in (
            serial.read_bytes() if serial.exists() else b""
        ):
            time.sleep(0.1)
        booted_s = time.monotonic() - started
        assert b"LAB-GUEST-READY" in serial.read_bytes(), "the guest kernel did not reach its init"
        print(f"\nVM lab timings: define→running {running_s:.2f} s, define→guest banner {booted_s:.2f} s")
        assert qemu_running(name)
    finally:
        driver.destroy_domain(name)
        driver.undefine_domain(name)
        driver.remove_mdev(mdev.uuid)
    assert driver.domain_info(name) is None
    assert driver.list_mdevs() == []
    assert not qemu_running(name)
    assert not (Path(LAB_SERIAL_DIR) / f"{name}-serial.log").exists()


def test_graceful_shutdown_powers_the_guest_off(vm_host):
    driver = driver_for(vm_host)
    name = f"itest-{uuid.uuid4().hex[:8]}"
    spec = DomainSpec(name=name, uuid=str(uuid.uuid4()), vcpus=1, memory_mib=256, disk_image="/unused.qcow2")
    try:
        driver.define_domain(spec)
        driver.start_domain(name)
        serial = Path(LAB_SERIAL_DIR) / f"{name}-serial.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and b"LAB-GUEST-READY" not in (
            serial.read_bytes() if serial.exists() else b""
        ):
            time.sleep(0.1)
        driver.shutdown_domain(name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and driver.domain_info(name).state == "running":
            time.sleep(0.1)
        assert driver.domain_info(name).state == "shutoff"
    finally:
        driver.destroy_domain(name)
        driver.undefine_domain(name)
