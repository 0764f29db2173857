"""Creating lab hosts: inventory that runs the real driver code on machines without NVIDIA GPUs.

A lab host is an ordinary Host row whose ``lab_xml`` names the node file that
describes its GPUs (built from the profile catalog). In the *test* flavour its
libvirt URI is ``test:///<that file>`` (libvirt's test driver, no daemon); in
the *vm* flavour it is ``qemu:///system`` (a real libvirtd booting tiny TCG
guests), and the file only describes the GPUs. Either way, ``sync_host`` then
fills the inventory through libvirt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from core.errors import PortalError
from core.writes import create_object, update_object
from inventory.choices import GPUMode, HostState, TelemetrySource
from inventory.drivers.lab import LabGPU, LabProfile, build_lab_xml
from inventory.drivers.libvirt import forget_connection
from inventory.models import GPU, Host, VGPUProfile

DEFAULT_HOSTS = ("lab-a40=A40x2", "lab-a16=A16x4", "lab-l40s=L40Sx2:passthrough")
_SPEC = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9-]{0,62})=(?P<board>[A-Z0-9]+)x(?P<count>\d{1,2})(?::(?P<mode>passthrough))?$"
)


@dataclass(frozen=True)
class LabHostSpec:
    name: str
    board: str
    count: int
    passthrough: bool = False
    cpu_cores: int = 64
    memory_mib: int = 262144
    iommu: bool = True  # False: the lab file says the host cannot pass PCI devices through

    @classmethod
    def parse(cls, text: str) -> LabHostSpec:
        match = _SPEC.match(text.strip())
        if not match or int(match["count"]) < 1:
            raise PortalError(f"lab host {text!r} must look like NAME=BOARDxCOUNT[:passthrough], e.g. lab-a40=A40x2")
        return cls(match["name"], match["board"], int(match["count"]), bool(match["mode"]))

    def pci_addresses(self) -> list[str]:
        return [f"0000:{0x41 + 0x20 * i:02x}:00.0" for i in range(self.count)]


def write_lab_xml(spec: LabHostSpec, directory: Path) -> Path:
    profiles = [LabProfile(p.name, p.board, p.max_per_gpu) for p in VGPUProfile.objects.filter(board=spec.board)]
    if not profiles:
        boards = ", ".join(sorted(set(VGPUProfile.objects.values_list("board", flat=True)))) or "none: seed the catalog"
        raise PortalError(f"the profile catalog has no board {spec.board} (boards: {boards})")
    xml = build_lab_xml(
        host=spec.name,
        cpu_cores=spec.cpu_cores,
        memory_mib=spec.memory_mib,
        gpus=[LabGPU(pci, spec.board) for pci in spec.pci_addresses()],
        profiles=profiles,
        iommu=spec.iommu,
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = (directory / f"{spec.name}.xml").resolve()
    path.write_text(xml)
    return path


@transaction.atomic
def create_lab_host(spec: LabHostSpec, *, directory: Path, flavour: str, actor=None) -> Host:
    """Write the host's lab file and create (or re-point) its Host row. Call ``sync_host`` next."""
    if flavour not in ("test", "vm"):
        raise PortalError(f"lab flavour must be 'test' or 'vm', not {flavour!r}")
    path = write_lab_xml(spec, directory)
    uri = f"test://{path}" if flavour == "test" else "qemu:///system"
    forget_connection(uri)
    forget_connection(f"test://{path}")
    fields = {
        "libvirt_uri": uri,
        "lab_xml": str(path),
        "telemetry_source": TelemetrySource.SIMULATED,
        "notes": f"{flavour} lab: {spec.count}× {spec.board}",
    }
    host = Host.objects.filter(name=spec.name).first()
    if host is None:
        host = create_object(Host(name=spec.name, state=HostState.OFFLINE, **fields), actor=actor)
    else:
        host = update_object(host, fields, actor=actor)
    if spec.passthrough:
        for pci in spec.pci_addresses():
            GPU.objects.get_or_create(
                host=host,
                pci_address=pci,
                defaults={"model": spec.board, "framebuffer_mib": 1, "mode": GPUMode.PASSTHROUGH},
            )
    return host
