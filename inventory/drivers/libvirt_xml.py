"""Building domain XML and reading libvirt's node-device and domain XML. Pure functions."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from inventory.drivers.base import DomainInfo, DomainSpec, GPUDevice, Mdev, MdevType, Passthrough

NVIDIA_VENDOR = "0x10de"
METADATA_NS = "https://gpu-portal.example.org/xmlns/desktop/1"
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"
_PCI = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def pci_from_nodedev_name(name: str) -> str:
    """pci_0000_41_00_0 → 0000:41:00.0"""
    parts = name.split("_")
    if len(parts) != 5 or parts[0] != "pci":
        raise ValueError(f"not a PCI node device name: {name}")
    return f"{parts[1]}:{parts[2]}:{parts[3]}.{parts[4]}"


def nodedev_name_from_pci(pci: str) -> str:
    match = _PCI.match(pci)
    if not match:
        raise ValueError(f"not a PCI address: {pci}")
    return "pci_{}_{}_{}_{}".format(*match.groups())


def _text(element: ET.Element | None, path: str, default: str = "") -> str:
    if element is None:
        return default
    found = element.find(path)
    return (found.text or "").strip() if found is not None and found.text else default


def parse_gpu_nodedev(xml: str) -> GPUDevice | None:
    """A PCI node device's XML → GPUDevice, or None when it is not an NVIDIA GPU."""
    root = ET.fromstring(xml)
    pci = root.find("capability[@type='pci']")
    if pci is None:
        return None
    vendor = pci.find("vendor")
    vendor_id = (vendor.get("id") or "").lower() if vendor is not None else ""
    if vendor_id != NVIDIA_VENDOR:
        return None
    product = pci.find("product")
    address = "{:04x}:{:02x}:{:02x}.{:x}".format(
        *(int(_text(pci, tag, "0"), 0) for tag in ("domain", "bus", "slot", "function"))
    )
    types = []
    for mdev_types in pci.findall("capability[@type='mdev_types']"):
        for t in mdev_types.findall("type"):
            types.append(
                MdevType(
                    type_id=t.get("id", ""),
                    name=_text(t, "name"),
                    available_instances=int(_text(t, "availableInstances", "0")),
                    device_api=_text(t, "deviceAPI", "vfio-pci"),
                )
            )
    return GPUDevice(
        nodedev_name=_text(root, "name"),
        pci_address=address,
        vendor_id=vendor_id,
        product_id=(product.get("id") or "") if product is not None else "",
        product_name=(product.text or "").strip() if product is not None and product.text else "",
        mdev_types=tuple(types),
    )


def parse_mdev_nodedev(xml: str) -> Mdev | None:
    """An mdev node device's XML → Mdev (without its domain)."""
    root = ET.fromstring(xml)
    cap = root.find("capability[@type='mdev']")
    if cap is None:
        return None
    type_el = cap.find("type")
    uuid = _text(cap, "uuid")
    if not uuid:  # older libvirt: the uuid is only in the device name, mdev_<uuid with _>[_parent]
        name = _text(root, "name")
        uuid = "-".join(name.split("_")[1:6]) if name.startswith("mdev_") else ""
    parent = _text(root, "parent")
    return Mdev(
        uuid=uuid.lower(),
        type_id=type_el.get("id", "") if type_el is not None else "",
        parent_pci=pci_from_nodedev_name(parent) if parent.startswith("pci_") else parent,
    )


def mdev_nodedev_xml(parent_pci: str, type_id: str, uuid: str) -> str:
    device = ET.Element("device")
    ET.SubElement(device, "parent").text = nodedev_name_from_pci(parent_pci)
    cap = ET.SubElement(device, "capability", type="mdev")
    ET.SubElement(cap, "type", id=type_id)
    ET.SubElement(cap, "uuid").text = uuid
    return ET.tostring(device, encoding="unicode")


def build_domain_xml(spec: DomainSpec) -> str:
    """The domain for one desktop: vGPU as an mdev hostdev that is also its display (or recorded in
    metadata where the host has no VFIO), whole GPUs as PCI hostdevs beside the emulated display,
    the guest agent's channel, VNC on the host's loopback."""
    if not _SAFE_NAME.match(spec.name):
        raise ValueError(f"domain name {spec.name!r} must be 1-64 letters, digits, '_', '.', '-'")
    if bool(spec.disk_image) == bool(spec.kernel):
        raise ValueError("a domain boots from exactly one of: a disk image, or a kernel (+ initrd)")
    domain = ET.Element("domain", type=spec.domain_type)
    ET.SubElement(domain, "name").text = spec.name
    ET.SubElement(domain, "uuid").text = spec.uuid
    ET.SubElement(domain, "memory", unit="MiB").text = str(spec.memory_mib)
    ET.SubElement(domain, "currentMemory", unit="MiB").text = str(spec.memory_mib)
    ET.SubElement(domain, "vcpu", placement="static").text = str(spec.vcpus)

    metadata = ET.SubElement(domain, "metadata")
    ET.register_namespace("desktop", METADATA_NS)
    desktop = ET.SubElement(metadata, f"{{{METADATA_NS}}}desktop")
    for key, value in sorted(spec.metadata.items()):
        desktop.set(key, str(value))
    for uuid in spec.mdev_uuids:
        ET.SubElement(desktop, f"{{{METADATA_NS}}}vgpu", uuid=uuid)

    os_el = ET.SubElement(domain, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    if spec.kernel:
        ET.SubElement(os_el, "kernel").text = spec.kernel
        if spec.initrd:
            ET.SubElement(os_el, "initrd").text = spec.initrd
        if spec.cmdline:
            ET.SubElement(os_el, "cmdline").text = spec.cmdline
    else:
        ET.SubElement(os_el, "boot", dev="hd")
    features = ET.SubElement(domain, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(domain, "on_poweroff").text = "destroy"
    ET.SubElement(domain, "on_reboot").text = "restart"
    ET.SubElement(domain, "on_crash").text = "destroy"

    devices = ET.SubElement(domain, "devices")
    if spec.disk_image:
        disk = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(disk, "driver", name="qemu", type="qcow2")
        ET.SubElement(disk, "source", file=spec.disk_image)
        ET.SubElement(disk, "target", dev="vda", bus="virtio")
    vgpus = spec.mdev_uuids if spec.attach_vgpu_as_hostdev else ()
    for uuid in vgpus:
        # display='on': the vGPU's own output is the guest's screen (what VNC and the console show);
        # ramfb='on': a boot framebuffer until the guest's NVIDIA driver takes over (libvirt >= 5.10).
        display = {"display": "on", "ramfb": "on"} if spec.vgpu_display else {}
        hostdev = ET.SubElement(devices, "hostdev", mode="subsystem", type="mdev", model="vfio-pci", **display)
        source = ET.SubElement(hostdev, "source")
        ET.SubElement(source, "address", uuid=uuid)
    for pci in spec.passthrough_pci:
        match = _PCI.match(pci)
        if not match:
            raise ValueError(f"not a PCI address: {pci}")
        hostdev = ET.SubElement(devices, "hostdev", mode="subsystem", type="pci", managed="yes")
        source = ET.SubElement(hostdev, "source")
        dom, bus, slot, function = match.groups()
        ET.SubElement(source, "address", domain=f"0x{dom}", bus=f"0x{bus}", slot=f"0x{slot}", function=f"0x{function}")
    if spec.serial_log:
        serial = ET.SubElement(devices, "serial", type="file")
        ET.SubElement(serial, "source", path=spec.serial_log)
        ET.SubElement(serial, "target", port="0")
    if spec.guest_agent:  # libvirt picks the socket path; the driver pings the agent through it
        channel = ET.SubElement(devices, "channel", type="unix")
        ET.SubElement(channel, "target", type="virtio", name=GUEST_AGENT_CHANNEL)
    ET.SubElement(devices, "graphics", type="vnc", port="-1", autoport="yes", listen=spec.vnc_listen)
    if vgpus and spec.vgpu_display:  # no emulated VGA beside the vGPU: VNC shows the vGPU's display
        ET.SubElement(ET.SubElement(devices, "video"), "model", type="none")
    return ET.tostring(domain, encoding="unicode")


_STATES = {
    0: "nostate",
    1: "running",
    2: "blocked",
    3: "paused",
    4: "shutdown",
    5: "shutoff",
    6: "crashed",
    7: "pmsuspended",
}


def state_name(code: int) -> str:
    return _STATES.get(code, f"unknown-{code}")


def parse_domain_xml(xml: str, state: str) -> DomainInfo:
    """Domain XML → DomainInfo. mdev uuids come from hostdevs and from the metadata record
    (lab hosts without VFIO); passthrough GPUs from PCI hostdevs."""
    root = ET.fromstring(xml)
    vnc_port = None
    graphics = root.find("devices/graphics[@type='vnc']")
    if graphics is not None and state == "running":
        port = int(graphics.get("port", "-1"))
        vnc_port = port if port > 0 else None
    uuids = [
        (address.get("uuid") or "").lower()
        for address in root.findall("devices/hostdev[@type='mdev']/source/address")
        if address.get("uuid")
    ]
    metadata: dict = {}
    desktop = root.find(f"metadata/{{{METADATA_NS}}}desktop")
    if desktop is not None:
        metadata = dict(desktop.attrib)
        for vgpu in desktop.findall(f"{{{METADATA_NS}}}vgpu"):
            uuid = (vgpu.get("uuid") or "").lower()
            if uuid and uuid not in uuids:
                uuids.append(uuid)
    passthrough = []
    for address in root.findall("devices/hostdev[@type='pci']/source/address"):
        dom, bus, slot, function = (int(address.get(k, "0"), 0) for k in ("domain", "bus", "slot", "function"))
        passthrough.append(f"{dom:04x}:{bus:02x}:{slot:02x}.{function:x}")
    return DomainInfo(
        name=_text(root, "name"),
        uuid=_text(root, "uuid"),
        state=state,
        vnc_port=vnc_port,
        mdev_uuids=tuple(uuids),
        metadata=metadata,
        passthrough_pci=tuple(passthrough),
    )


def parse_passthrough(domcaps_xml: str, virttype: str) -> Passthrough:
    """Whether guests of ``virttype`` may take PCI devices, from libvirt's domain capabilities: a
    ``<hostdev supported='yes'>`` whose ``subsysType`` lists ``pci`` and whose ``pciBackend`` lists
    ``vfio``. libvirt lists the VFIO backend only where the kernel has IOMMU groups, so that listing is
    also the IOMMU check."""
    hostdev = ET.fromstring(domcaps_xml).find("./devices/hostdev")
    if hostdev is None or hostdev.get("supported") != "yes":
        return Passthrough(False, f"libvirt's domain capabilities ({virttype}) offer no host devices to guests")

    def listed(name: str) -> list[str]:
        return [(v.text or "").strip() for v in hostdev.findall(f"./enum[@name='{name}']/value")]

    if "pci" not in listed("subsysType"):
        return Passthrough(False, f"libvirt's domain capabilities ({virttype}) list no PCI host devices")
    backends = listed("pciBackend")
    if "vfio" not in backends:
        return Passthrough(
            False,
            f"libvirt's domain capabilities ({virttype}) list PCI host devices without the VFIO backend "
            f"(pciBackend: {', '.join(backends) or 'none'}): the IOMMU is off or vfio-pci is not loaded",
        )
    return Passthrough(True, f"libvirt's domain capabilities ({virttype}) list PCI host devices with the VFIO backend")


def parse_lab_passthrough(lab_xml: str) -> Passthrough:
    """A test-driver lab host's answer, from its lab file: libvirt's test driver has no domain
    capabilities, so the file says it with ``<iommu support='no'/>`` (as libvirt's host capabilities
    do); without that element the lab host can pass through, as test labs always could."""
    iommu = ET.fromstring(lab_xml).find("./iommu")
    if iommu is not None and iommu.get("support") == "no":
        return Passthrough(False, "the lab file says <iommu support='no'/>: no PCI passthrough on this lab host")
    return Passthrough(True, "libvirt's test driver: a lab host passes PCI devices through unless its file says not")
