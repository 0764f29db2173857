"""The driver seam: plain data types and the one error type every driver raises.

A host driver (``inventory.drivers.libvirt.LibvirtDriver``) discovers GPUs, mdevs and domains, builds
and removes them, and answers ``wait_guest_ready(name, timeout_s)``: it returns once the started
guest says it is up and raises ``DriverError`` (not retryable, the reason in words) when it does not
within the time limit."""

from __future__ import annotations

from dataclasses import dataclass, field


class DriverError(Exception):
    """A host operation failed. ``retryable`` says whether trying again can help
    (connection refused, timeouts) or not (bad XML, unknown type, no free instance).
    ``detail`` keeps the underlying libvirt/NVML message verbatim."""

    def __init__(self, message: str, *, retryable: bool, detail: str = "", code: int | None = None):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.detail = detail
        self.code = code

    def __str__(self) -> str:
        return f"{self.message}: {self.detail}" if self.detail else self.message


@dataclass(frozen=True)
class MdevType:
    """One vGPU type a GPU offers, as the host reports it."""

    type_id: str  # nvidia-558; differs per driver release
    name: str  # "NVIDIA A40-8Q" or "GRID A40-8Q"
    available_instances: int
    device_api: str = "vfio-pci"

    @property
    def profile_name(self) -> str:
        """The catalog name (A40-8Q): the type name without its vendor prefix."""
        return self.name.split()[-1] if self.name else ""


@dataclass(frozen=True)
class GPUDevice:
    """A physical NVIDIA GPU as libvirt's node devices describe it."""

    nodedev_name: str  # pci_0000_41_00_0
    pci_address: str  # 0000:41:00.0
    vendor_id: str
    product_id: str
    product_name: str
    mdev_types: tuple[MdevType, ...] = ()

    @property
    def model(self) -> str:
        """Board model: from the vGPU types offered (A40-8Q → A40), else the product's [A40] tag."""
        for mdev_type in self.mdev_types:
            board = mdev_type.profile_name.split("-")[0]
            if board:
                return board
        if "[" in self.product_name and "]" in self.product_name:
            return self.product_name.rsplit("[", 1)[1].split("]")[0].strip()
        return self.product_name


@dataclass(frozen=True)
class Mdev:
    """A mediated device (one vGPU instance) on a GPU, and the domain using it, if any."""

    uuid: str
    type_id: str
    parent_pci: str
    domain: str | None = None


@dataclass(frozen=True)
class HostInfo:
    arch: str
    cpu_cores: int
    memory_mib: int
    libvirt_version: str
    hostname: str


@dataclass(frozen=True)
class DomainInfo:
    name: str
    uuid: str
    state: str  # running, shutoff, paused, ...
    vnc_port: int | None
    mdev_uuids: tuple[str, ...] = ()
    metadata: dict = field(default_factory=dict)
    passthrough_pci: tuple[str, ...] = ()


@dataclass(frozen=True)
class Passthrough:
    """Whether the host can hand a whole PCI device (a GPU) to a guest: libvirt offers PCI host devices
    with the VFIO backend, which it lists only where the IOMMU is on. ``note`` says why, for admins,
    with libvirt's own words."""

    capable: bool = True
    note: str = ""


@dataclass(frozen=True)
class Discovery:
    info: HostInfo
    gpus: tuple[GPUDevice, ...]
    mdevs: tuple[Mdev, ...]
    domains: tuple[DomainInfo, ...]
    passthrough: Passthrough = Passthrough()


@dataclass(frozen=True)
class DomainSpec:
    """What a desktop needs on its host. Exactly one boot source: a disk image, or a
    kernel + initrd (the lab's tiny guests)."""

    name: str
    uuid: str
    vcpus: int
    memory_mib: int
    domain_type: str = "kvm"  # "qemu" (TCG) in the lab, where /dev/kvm cannot run guests
    disk_image: str = ""
    kernel: str = ""
    initrd: str = ""
    cmdline: str = ""
    mdev_uuids: tuple[str, ...] = ()
    passthrough_pci: tuple[str, ...] = ()
    attach_vgpu_as_hostdev: bool = True
    vnc_listen: str = "127.0.0.1"
    serial_log: str = ""
    metadata: dict = field(default_factory=dict)
    # The qemu guest agent's channel: how a real host learns that the guest is up (guest-ping).
    # The lab's busybox guests have no agent; they print a banner on the serial log instead.
    guest_agent: bool = True
    # A vGPU as the display (mdev hostdev display='on' + ramfb='on', no emulated video): the console
    # then shows the vGPU's output, boot screen included. Passthrough GPUs keep the emulated display.
    vgpu_display: bool = True
