"""Building a lab host's node XML for libvirt's test driver from the vGPU profile catalog.

The file is what ``test:///path/lab.xml`` serves: host CPUs and memory, and one
PCI node device per GPU (NVIDIA vendor 0x10de) with a ``mdev_types`` capability
listing every profile of its board, as a real host running the NVIDIA vGPU
manager reports them. Plain data in, XML out.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from inventory.drivers.libvirt_xml import NVIDIA_VENDOR, nodedev_name_from_pci

# PCI device ids of the boards in the catalog (as lspci shows them), for realistic node devices.
PRODUCT_IDS = {
    "A10": ("0x2236", "GA102GL [A10]"),
    "A16": ("0x25b6", "GA107GL [A16]"),
    "A40": ("0x2235", "GA102GL [A40]"),
    "A100": ("0x20f1", "GA100 [A100 PCIe 40GB]"),
    "A100D": ("0x20b5", "GA100 [A100D PCIe 80GB]"),
    "H100": ("0x2331", "GH100 [H100 PCIe]"),
    "L4": ("0x27b8", "AD104GL [L4]"),
    "L40S": ("0x26b9", "AD102GL [L40S]"),
    "P100": ("0x15f8", "GP100GL [Tesla P100 PCIe 16GB]"),
    "T4": ("0x1eb8", "TU104GL [Tesla T4]"),
    "V100": ("0x1db4", "GV100GL [Tesla V100 PCIe 16GB]"),
    "V100D": ("0x1db6", "GV100GL [Tesla V100 PCIe 32GB]"),
}


@dataclass(frozen=True)
class LabProfile:
    name: str  # A40-8Q
    board: str
    max_per_gpu: int


@dataclass(frozen=True)
class LabGPU:
    pci_address: str
    board: str


def mdev_type_ids(profiles: list[LabProfile]) -> dict[str, str]:
    """A stable nvidia-NNN id per profile name (real ids differ per driver release, as here)."""
    return {p.name: f"nvidia-{500 + index}" for index, p in enumerate(sorted(profiles, key=lambda p: p.name))}


def build_lab_xml(
    *,
    host: str,
    cpu_cores: int,
    memory_mib: int,
    gpus: list[LabGPU],
    profiles: list[LabProfile],
    iommu: bool = True,
) -> str:
    """The node file; ``iommu=False`` marks a test-driver lab host that cannot pass PCI devices through."""
    type_ids = mdev_type_ids(profiles)
    node = ET.Element("node")
    cpu = ET.SubElement(node, "cpu")
    for tag, value in (
        ("mhz", 2900),
        ("model", "x86_64"),
        ("active", cpu_cores),
        ("nodes", 1),
        ("sockets", 1),
        ("cores", cpu_cores),
        ("threads", 1),
    ):
        ET.SubElement(cpu, tag).text = str(value)
    ET.SubElement(node, "memory").text = str(memory_mib * 1024)  # KiB
    if not iommu:
        ET.SubElement(node, "iommu", support="no")  # libvirt's test driver ignores it; sync reads it

    computer = ET.SubElement(node, "device")
    ET.SubElement(computer, "name").text = "computer"
    hardware = ET.SubElement(ET.SubElement(computer, "capability", type="system"), "hardware")
    ET.SubElement(hardware, "vendor").text = "GPU Portal lab"
    ET.SubElement(hardware, "uuid").text = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{host}.lab.gpu-portal"))

    for gpu in sorted(gpus, key=lambda g: g.pci_address):
        board_profiles = sorted((p for p in profiles if p.board == gpu.board), key=lambda p: p.name)
        if not board_profiles:
            raise ValueError(f"the catalog has no vGPU profile for board {gpu.board}")
        product_id, product_name = PRODUCT_IDS.get(gpu.board, ("0x0000", f"NVIDIA [{gpu.board}]"))
        domain, bus, slot_fn = gpu.pci_address.split(":")
        slot, function = slot_fn.split(".")
        device = ET.SubElement(node, "device")
        ET.SubElement(device, "name").text = nodedev_name_from_pci(gpu.pci_address)
        ET.SubElement(device, "parent").text = "computer"
        ET.SubElement(ET.SubElement(device, "driver"), "name").text = "nvidia"
        pci = ET.SubElement(device, "capability", type="pci")
        ET.SubElement(pci, "class").text = "0x030200"
        for tag, value in (("domain", domain), ("bus", bus), ("slot", slot), ("function", function)):
            ET.SubElement(pci, tag).text = str(int(value, 16))
        ET.SubElement(pci, "product", id=product_id).text = product_name
        ET.SubElement(pci, "vendor", id=NVIDIA_VENDOR).text = "NVIDIA Corporation"
        types = ET.SubElement(pci, "capability", type="mdev_types")
        for profile in board_profiles:
            t = ET.SubElement(types, "type", id=type_ids[profile.name])
            ET.SubElement(t, "name").text = f"NVIDIA {profile.name}"
            ET.SubElement(t, "deviceAPI").text = "vfio-pci"
            ET.SubElement(t, "availableInstances").text = str(profile.max_per_gpu)
    ET.indent(node)
    return ET.tostring(node, encoding="unicode") + "\n"
