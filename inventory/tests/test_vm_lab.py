"""Integration tier: real guests through a real libvirtd (the VM lab), via the same driver code.

Needs `scripts/vmlab.sh start` (CI runs it and sets PORTAL_REQUIRE_VM_LAB=1, so a broken lab
fails here instead of skipping)."""

import os
import socket
import struct
import subprocess
import time
import uuid
import zlib
from pathlib import Path

import libvirt
import pytest

from inventory.drivers.base import DomainSpec, DriverError
from inventory.drivers.libvirt import LAB_SERIAL_DIR, forget_connection, lab_serial_log
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


class RFBClient:
    """Just enough of RFB 3.8 to see a guest's screen and type on it: security None, the server's own
    pixel format (QEMU: 32 bpp true colour), raw updates, key events."""

    SHIFT, ENTER = 0xFFE1, 0xFF0D
    SHIFTED = set('~!@#$%^&*()_+{}|:"<>?') | set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert self._read(12).startswith(b"RFB 003.")
        self.sock.sendall(b"RFB 003.008\n")
        types = self._read(self._read(1)[0])
        assert 1 in types, f"the guest's VNC server wants authentication: {types!r}"
        self.sock.sendall(b"\x01")
        assert struct.unpack(">I", self._read(4))[0] == 0, "security handshake refused"
        self.sock.sendall(b"\x01")  # ClientInit: shared
        self.width, self.height = struct.unpack(">HH", self._read(4))
        self.bpp, _depth, self.big_endian, _true = struct.unpack(">BBBB", self._read(4))
        self.shifts = struct.unpack(">HHHBBB", self._read(9))[3:]
        self._read(3)
        self.name = self._read(struct.unpack(">I", self._read(4))[0]).decode()
        self.sock.sendall(struct.pack(">BxHi", 2, 1, 0))  # SetEncodings: raw only
        self.pixels = bytearray(self.width * self.height * 4)

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the VNC server closed the connection")
            data += chunk
        return data

    def framebuffer(self) -> bytes:
        """A full update (FramebufferUpdateRequest, not incremental) as RGB bytes, row by row."""
        assert self.bpp == 32, f"unexpected pixel format: {self.bpp} bpp"
        self.sock.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, self.width, self.height))
        while True:
            kind = self._read(1)[0]
            if kind == 0:
                break
            if kind == 2:  # Bell
                continue
            if kind == 3:  # ServerCutText
                self._read(struct.unpack(">3xI", self._read(7))[0])
                continue
            raise AssertionError(f"unexpected server message {kind}")
        (count,) = struct.unpack(">xH", self._read(3))
        for _ in range(count):
            x, y, w, h, encoding = struct.unpack(">HHHHi", self._read(12))
            if encoding == -223:  # DesktopSize pseudo-encoding
                self.width, self.height = w, h
                self.pixels = bytearray(w * h * 4)
                continue
            assert encoding == 0, f"asked for raw, got encoding {encoding}"
            data = self._read(w * h * 4)
            for row in range(h):
                start = ((y + row) * self.width + x) * 4
                self.pixels[start : start + w * 4] = data[row * w * 4 : (row + 1) * w * 4]
        order = ">" if self.big_endian else "<"
        rgb = bytearray()
        red, green, blue = self.shifts
        for (value,) in struct.iter_unpack(order + "I", self.pixels):
            rgb += bytes(((value >> red) & 255, (value >> green) & 255, (value >> blue) & 255))
        return bytes(rgb)

    def key(self, keysym: int) -> None:
        self.sock.sendall(struct.pack(">BBxxI", 4, 1, keysym) + struct.pack(">BBxxI", 4, 0, keysym))
        time.sleep(0.03)  # TCG guests are slow: keep key events apart as a person would

    def type(self, text: str) -> None:
        for char in text:
            if char in self.SHIFTED:
                self.sock.sendall(struct.pack(">BBxxI", 4, 1, self.SHIFT))
                self.key(ord(char))
                self.sock.sendall(struct.pack(">BBxxI", 4, 0, self.SHIFT))
            else:
                self.key(self.ENTER if char == "\n" else ord(char))

    def close(self):
        self.sock.close()


def write_png(path: Path, width: int, height: int, rgb: bytes) -> None:
    """RGB bytes → a PNG file (no imaging library needed)."""
    rows = b"".join(b"\x00" + rgb[y * width * 3 : (y + 1) * width * 3] for y in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )


def lit_pixels(rgb: bytes) -> int:
    return sum(1 for i in range(0, len(rgb), 3) if rgb[i] + rgb[i + 1] + rgb[i + 2] > 96)


def wait_for_serial(name: str, needle: bytes, timeout: float = 60.0) -> bool:
    serial = Path(lab_serial_log(name))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in (serial.read_bytes() if serial.exists() else b""):
            return True
        time.sleep(0.1)
    return False


def test_vm_lab_guest_console_shows_a_named_prompt_and_takes_keystrokes(vm_host):
    """What a console user gets: after wait_guest_ready, the VGA screen (what VNC shows) holds a shell
    whose prompt names the desktop, and keys typed over VNC reach it: its echo lands in the serial log."""
    driver = driver_for(vm_host)
    name = f"desktop-{uuid.uuid4().hex[:6]}"
    spec = DomainSpec(name=name, uuid=str(uuid.uuid4()), vcpus=1, memory_mib=256, disk_image="/unused.qcow2")
    try:
        driver.define_domain(spec)
        info = driver.start_domain(name)
        driver.wait_guest_ready(name, timeout_s=120)
        assert f"name={name}".encode() in Path(lab_serial_log(name)).read_bytes()  # from portal.desktop=
        time.sleep(1)  # the VGA shell prints its prompt as the banner goes out
        client = RFBClient(info.vnc_port)
        try:
            screen = client.framebuffer()
            shots = ROOT / "test-artifacts" / "screenshots"
            shots.mkdir(parents=True, exist_ok=True)
            write_png(shots / "vm-lab-guest-console.png", client.width, client.height, screen)
            assert lit_pixels(screen) > 500, "the guest's screen is blank"
            marker = f"console-{uuid.uuid4().hex[:8]}"
            client.type(f"echo {marker} > /dev/ttyS0\n")
            assert wait_for_serial(name, marker.encode(), timeout=60), "the keystrokes never reached the guest"
            typed = client.framebuffer()
            write_png(shots / "vm-lab-guest-console-typed.png", client.width, client.height, typed)
            assert lit_pixels(typed) > lit_pixels(screen)  # the typed line shows on the screen too
        finally:
            client.close()
    finally:
        driver.destroy_domain(name)
        driver.undefine_domain(name)


def test_wait_guest_ready_fails_in_words_when_the_guest_stops(vm_host):
    driver = driver_for(vm_host)
    name = f"itest-{uuid.uuid4().hex[:8]}"
    spec = DomainSpec(name=name, uuid=str(uuid.uuid4()), vcpus=1, memory_mib=256, disk_image="/unused.qcow2")
    try:
        driver.define_domain(spec)
        driver.start_domain(name)
        driver.destroy_domain(name)
        with pytest.raises(DriverError) as caught:
            driver.wait_guest_ready(name, timeout_s=60)
        assert not caught.value.retryable and "stopped before its guest was ready" in str(caught.value)
    finally:
        driver.destroy_domain(name)
        driver.undefine_domain(name)


def test_a_restarted_lab_guest_is_ready_only_after_its_new_banner(vm_host):
    """Each start of the domain's QEMU truncates its serial log: the banner waited for is this boot's."""
    driver = driver_for(vm_host)
    name = f"itest-{uuid.uuid4().hex[:8]}"
    spec = DomainSpec(name=name, uuid=str(uuid.uuid4()), vcpus=1, memory_mib=256, disk_image="/unused.qcow2")
    try:
        driver.define_domain(spec)
        driver.start_domain(name)
        driver.wait_guest_ready(name, timeout_s=120)
        driver.destroy_domain(name)
        driver.start_domain(name)
        assert b"LAB-GUEST-READY" not in Path(lab_serial_log(name)).read_bytes()
        driver.wait_guest_ready(name, timeout_s=120)
    finally:
        driver.destroy_domain(name)
        driver.undefine_domain(name)
