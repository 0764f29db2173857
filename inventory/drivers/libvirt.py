"""The one libvirt driver, used for every host by URI.

``qemu:///system`` on the host itself, ``qemu+ssh://…``/``qemu+tls://…`` remotely,
``test:///path/lab.xml`` for the test-driver lab. Lab hosts (``lab=LabConfig``)
differ only where the hardware does: their mediated devices are kept by the
lab's store (no VFIO, and the test driver cannot create mdevs), a VM-lab host
reads its GPUs' node devices from the lab XML, and without VFIO the vGPU is
recorded in the domain's metadata instead of a hostdev. Every other line of
code is the same for lab and real hosts.
"""

from __future__ import annotations

import threading
import uuid as uuidlib
from dataclasses import dataclass, replace
from pathlib import Path

import libvirt

from inventory.drivers.base import (
    Discovery,
    DomainInfo,
    DomainSpec,
    DriverError,
    GPUDevice,
    HostInfo,
    Mdev,
    Passthrough,
)
from inventory.drivers.guest import wait_for_agent, wait_for_banner
from inventory.drivers.libvirt_xml import (
    build_domain_xml,
    mdev_nodedev_xml,
    parse_domain_xml,
    parse_gpu_nodedev,
    parse_lab_passthrough,
    parse_mdev_nodedev,
    parse_passthrough,
    state_name,
)
from inventory.drivers.mdevstore import LabMdevStore

# Codes after which the same call may succeed later: the host or its daemon is unreachable or slow.
_RETRYABLE_CODES = {
    getattr(libvirt, name)
    for name in (
        "VIR_ERR_NO_CONNECT",
        "VIR_ERR_RPC",
        "VIR_ERR_OPERATION_TIMEOUT",
        "VIR_ERR_AGENT_UNRESPONSIVE",
        "VIR_ERR_AUTH_UNAVAILABLE",
        "VIR_ERR_SYSTEM_ERROR",
    )
    if hasattr(libvirt, name)
}
_TRANSPORT_DOMAINS = {libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE}


def translate(exc: libvirt.libvirtError, action: str) -> DriverError:
    """A libvirt error → DriverError, keeping libvirt's message and saying whether a retry can help."""
    code, domain = exc.get_error_code(), exc.get_error_domain()
    retryable = code in _RETRYABLE_CODES
    if code == libvirt.VIR_ERR_SYSTEM_ERROR:
        # System errors are transient only when they come from the transport (refused, reset, timed out).
        retryable = domain in _TRANSPORT_DOMAINS
    return DriverError(action, retryable=retryable, detail=exc.get_error_message() or str(exc), code=code)


@dataclass(frozen=True)
class LabConfig:
    """A lab host: its GPUs are described by ``xml`` (a test-driver node file) and its
    mdevs recorded in ``store``."""

    xml: Path

    @property
    def store(self) -> LabMdevStore:
        return LabMdevStore(self.xml.with_name(self.xml.stem + ".mdevs.json"))

    @property
    def nodedev_uri(self) -> str:
        return f"test://{self.xml.resolve()}"

    @property
    def payload(self) -> Path:
        """The VM lab's guest: a Debian cloud kernel and a busybox initramfs (scripts/vmlab.sh builds them)."""
        return self.xml.parent / "payload"

    def guest(self, spec: DomainSpec) -> DomainSpec:
        """What a VM-lab host actually boots for a desktop: a tiny TCG guest (1 vCPU, 256 MiB, no disk)
        instead of the template's image. The portal still accounts the template's vCPUs and RAM.
        The guest learns its name from ``portal.desktop=`` (its console prompt shows it) and says it
        is up on the serial log, not through a guest agent."""
        payload = self.payload.resolve()  # qemu runs as libvirt-qemu: hand it the real path
        kernel, initrd = payload / "vmlinuz", payload / "initrd.gz"
        if not kernel.exists() or not initrd.exists():
            raise DriverError(
                f"the VM lab's guest payload is missing in {self.payload}",
                retryable=False,
                detail="run scripts/vmlab.sh start",
            )
        return replace(
            spec,
            domain_type="qemu",
            disk_image="",
            kernel=str(kernel),
            initrd=str(initrd),
            cmdline=f"console=tty0 console=ttyS0 quiet panic=-1 consoleblank=0 portal.desktop={spec.name}",
            vcpus=1,
            memory_mib=min(spec.memory_mib, 256),
            serial_log=lab_serial_log(spec.name),
            guest_agent=False,
        )


# libvirt prints every error to stderr by default; ours are raised as DriverError instead.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

LAB_SERIAL_DIR = "/var/log/libvirt/qemu"


def lab_serial_log(name: str) -> str:
    """Where a VM-lab guest's serial console is written (truncated by each start of its QEMU)."""
    return f"{LAB_SERIAL_DIR}/{name}-serial.log"


_connections: dict[str, libvirt.virConnect] = {}
_connections_lock = threading.Lock()


def _connect(uri: str) -> libvirt.virConnect:
    """One connection per URI per process. The test driver keeps state per connection,
    so sharing is what makes a lab host's domains outlive a single call."""
    with _connections_lock:
        conn = _connections.get(uri)
        if conn is not None:
            try:
                if conn.isAlive():
                    return conn
            except libvirt.libvirtError:
                pass
            _connections.pop(uri, None)
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            raise translate(exc, f"cannot connect to {uri}") from exc
        if not uri.startswith("test:"):
            try:
                conn.setKeepAlive(5, 3)  # a dead peer is noticed within ~20 s instead of hanging
            except libvirt.libvirtError:
                pass  # local drivers without keepalive support
        _connections[uri] = conn
        return conn


def forget_connection(uri: str) -> None:
    """Drop a cached connection (a lab that was rebuilt must be read afresh)."""
    with _connections_lock:
        conn = _connections.pop(uri, None)
    if conn is not None:
        try:
            conn.close()
        except libvirt.libvirtError:
            pass


class LibvirtDriver:
    def __init__(self, uri: str, *, lab: LabConfig | None = None):
        self.uri = uri
        self.lab = lab

    # --- connections -------------------------------------------------------------------------
    @property
    def conn(self) -> libvirt.virConnect:
        return _connect(self.uri)

    @property
    def _nodedev_conn(self) -> libvirt.virConnect:
        if self.lab and not self.uri.startswith("test:"):
            return _connect(self.lab.nodedev_uri)  # VM lab: real libvirtd for guests, lab XML for GPUs
        return self.conn

    @property
    def vgpu_as_hostdev(self) -> bool:
        """False where the host has no VFIO (the VM lab): the vGPU is then recorded in metadata only."""
        return not (self.lab and not self.uri.startswith("test:"))

    def _call(self, action: str, fn, *args):
        try:
            return fn(*args)
        except libvirt.libvirtError as exc:
            raise translate(exc, action) from exc

    # --- discovery --------------------------------------------------------------------------
    def host_info(self) -> HostInfo:
        # A VM-lab host's CPUs and RAM are those its lab file describes, like its GPUs.
        arch, memory_mib, cpus, *_ = self._call("cannot read host info", self._nodedev_conn.getInfo)
        version = self._call("cannot read libvirt version", self.conn.getLibVersion)
        hostname = self._call("cannot read host name", self.conn.getHostname)
        major, minor, micro = version // 1_000_000, (version // 1000) % 1000, version % 1000
        return HostInfo(
            arch=arch,
            cpu_cores=cpus,
            memory_mib=memory_mib,
            libvirt_version=f"{major}.{minor}.{micro}",
            hostname=hostname,
        )

    def list_gpus(self) -> list[GPUDevice]:
        """NVIDIA PCI devices that offer vGPU types, plus NVIDIA PCI GPUs without them (passthrough-only)."""
        devices = self._call(
            "cannot list PCI node devices",
            self._nodedev_conn.listAllDevices,
            libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV,
        )
        gpus = []
        for device in devices:
            gpu = parse_gpu_nodedev(self._call("cannot read node device", device.XMLDesc, 0))
            if gpu is not None:
                gpus.append(gpu)
        return sorted(gpus, key=lambda g: g.pci_address)

    def list_mdevs(self) -> list[Mdev]:
        """Existing mediated devices, each with the domain that uses it (if any)."""
        if self.lab:
            mdevs = self.lab.store.list()
        else:
            devices = self._call(
                "cannot list mediated devices", self.conn.listAllDevices, libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_MDEV
            )
            mdevs = [m for m in (parse_mdev_nodedev(d.XMLDesc(0)) for d in devices) if m is not None]
        users = {uuid: d.name for d in self.list_domains() for uuid in d.mdev_uuids}
        return [Mdev(m.uuid, m.type_id, m.parent_pci, users.get(m.uuid, m.domain)) for m in mdevs]

    def list_domains(self) -> list[DomainInfo]:
        domains = self._call("cannot list domains", self.conn.listAllDomains, 0)
        return sorted((self._domain_info(d) for d in domains), key=lambda d: d.name)

    def discover(self):
        gpus = self.list_gpus()
        mdevs = self.list_mdevs()
        if self.lab:
            # Like a real board in equal-size mode: a type in use leaves only its own free slots.
            gpus = [self._with_lab_availability(gpu, mdevs) for gpu in gpus]
        return Discovery(
            info=self.host_info(),
            gpus=tuple(gpus),
            mdevs=tuple(mdevs),
            domains=tuple(self.list_domains()),
            passthrough=self.passthrough(),
        )

    def passthrough(self) -> Passthrough:
        """Whether this host can hand a whole GPU to a guest, from libvirt's domain capabilities (PCI
        host devices with the VFIO backend, which libvirt lists only with the IOMMU on). A VM-lab host asks
        for the TCG guests it boots; the test driver has no domain capabilities, so a test-driver lab's
        file answers (see ``parse_lab_passthrough``). Not capable, with libvirt's words, when no guest type
        answers; raises DriverError only when the host cannot be reached."""
        if self.uri.startswith("test:"):
            return parse_lab_passthrough(self.lab.xml.read_text()) if self.lab else Passthrough()
        problems = []
        for virttype in ("qemu",) if self.lab else ("kvm", "qemu"):
            try:
                xml = self.conn.getDomainCapabilities(None, None, None, virttype, 0)
            except libvirt.libvirtError as exc:
                error = translate(exc, f"cannot read domain capabilities ({virttype})")
                if error.retryable:
                    raise error from exc
                problems.append(str(error))
                continue
            return parse_passthrough(xml, virttype)
        return Passthrough(False, "; ".join(problems))

    @staticmethod
    def _with_lab_availability(gpu: GPUDevice, mdevs: list[Mdev]) -> GPUDevice:
        types = tuple(
            replace(t, available_instances=LabMdevStore.available(gpu, t.type_id, mdevs)) for t in gpu.mdev_types
        )
        return replace(gpu, mdev_types=types)

    # --- mediated devices ------------------------------------------------------------------------
    def _gpu(self, pci_address: str) -> GPUDevice:
        for gpu in self.list_gpus():
            if gpu.pci_address == pci_address:
                return gpu
        raise DriverError(f"no NVIDIA GPU at {pci_address} on {self.uri}", retryable=False)

    def create_mdev(self, parent_pci: str, type_id: str, uuid: str | None = None) -> Mdev:
        """Create one vGPU instance of ``type_id`` on the GPU at ``parent_pci``."""
        uuid = (uuid or str(uuidlib.uuid4())).lower()
        gpu = self._gpu(parent_pci)
        if self.lab:
            return self.lab.store.create(gpu, type_id, uuid)
        offered = {t.type_id: t for t in gpu.mdev_types}
        if type_id not in offered:
            raise DriverError(f"GPU {parent_pci} offers no vGPU type {type_id}", retryable=False)
        if offered[type_id].available_instances < 1:
            raise DriverError(f"GPU {parent_pci} has no free {type_id} instance", retryable=False)
        xml = mdev_nodedev_xml(parent_pci, type_id, uuid)
        if not hasattr(self.conn, "nodeDeviceDefineXML"):
            raise DriverError(
                "this libvirt-python cannot define mediated devices (needs libvirt 7.3 or newer)", retryable=False
            )
        try:
            device = self.conn.nodeDeviceDefineXML(xml, 0)
            device.create()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                raise DriverError(
                    f"the libvirt driver behind {self.uri} cannot create mediated devices",
                    retryable=False,
                    detail=exc.get_error_message(),
                    code=exc.get_error_code(),
                ) from exc
            raise translate(exc, f"cannot create {type_id} on {parent_pci}") from exc
        return Mdev(uuid=uuid, type_id=type_id, parent_pci=parent_pci)

    def remove_mdev(self, uuid: str) -> None:
        """Stop and undefine a mediated device. Removing one that is already gone is a no-op."""
        if self.lab:
            self.lab.store.remove(uuid)
            return
        for device in self._call(
            "cannot list mediated devices", self.conn.listAllDevices, libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_MDEV
        ):
            mdev = parse_mdev_nodedev(device.XMLDesc(0))
            if mdev is None or mdev.uuid != uuid.lower():
                continue
            try:
                if device.isActive():
                    device.destroy()
                if device.isPersistent():
                    device.undefine(0)
            except libvirt.libvirtError as exc:
                raise translate(exc, f"cannot remove mediated device {uuid}") from exc
            return

    # --- domains -------------------------------------------------------------------------------
    def _lookup(self, name: str) -> libvirt.virDomain | None:
        try:
            return self.conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise translate(exc, f"cannot look up domain {name}") from exc

    def _domain(self, name: str) -> libvirt.virDomain:
        domain = self._lookup(name)
        if domain is None:
            raise DriverError(f"no domain named {name} on {self.uri}", retryable=False)
        return domain

    def _domain_info(self, domain: libvirt.virDomain) -> DomainInfo:
        state = state_name(self._call("cannot read domain state", domain.state)[0])
        return parse_domain_xml(self._call("cannot read domain XML", domain.XMLDesc, 0), state)

    def define_domain(self, spec: DomainSpec) -> DomainInfo:
        """Define (persistently) the domain for ``spec``; defining the same name again is a no-op."""
        if spec.attach_vgpu_as_hostdev != self.vgpu_as_hostdev:
            spec = replace(spec, attach_vgpu_as_hostdev=self.vgpu_as_hostdev)
        if self.lab and not self.uri.startswith("test:"):
            spec = self.lab.guest(spec)
        existing = self._lookup(spec.name)
        if existing is not None:
            return self._domain_info(existing)
        try:
            xml = build_domain_xml(spec)
        except ValueError as exc:
            raise DriverError("cannot build domain XML", retryable=False, detail=str(exc)) from exc
        if self.lab and spec.mdev_uuids:
            self.lab.store.attach(spec.mdev_uuids, spec.name)
        try:
            domain = self.conn.defineXML(xml)
        except libvirt.libvirtError as exc:
            if self.lab and spec.mdev_uuids:
                self.lab.store.detach(spec.name)
            raise translate(exc, f"cannot define domain {spec.name}") from exc
        return self._domain_info(domain)

    def start_domain(self, name: str) -> DomainInfo:
        """Start the domain (from its managed-save image, if it has one: the suspended guest resumes)."""
        domain = self._domain(name)
        if not self._call("cannot read domain state", domain.isActive):
            self._call(f"cannot start domain {name}", domain.create)
        return self._domain_info(domain)

    def shutdown_domain(self, name: str) -> None:
        """Ask the guest to power off (ACPI). Returns at once; poll ``domain_info``."""
        domain = self._lookup(name)
        if domain is not None and self._call("cannot read domain state", domain.isActive):
            self._call(f"cannot shut down domain {name}", domain.shutdown)

    def destroy_domain(self, name: str) -> None:
        """Power off at once. A domain already off or gone is fine."""
        domain = self._lookup(name)
        if domain is not None and self._call("cannot read domain state", domain.isActive):
            self._call(f"cannot destroy domain {name}", domain.destroy)

    def managed_save(self, name: str) -> None:
        """Suspend to disk: libvirt saves the running guest's memory in its managed-save image and stops
        it; the next ``start_domain`` restores it. A domain already off with its image is fine."""
        domain = self._domain(name)
        if self._call("cannot read domain state", domain.isActive):
            self._call(f"cannot save domain {name}", domain.managedSave, 0)
        elif not self.has_managed_save(name):
            raise DriverError(f"domain {name} is off and has no saved memory image", retryable=False)

    def has_managed_save(self, name: str) -> bool:
        """Does the domain have a managed-save image (it restores from it when started)?"""
        domain = self._lookup(name)
        return domain is not None and bool(self._call("cannot read managed save", domain.hasManagedSaveImage, 0))

    def undefine_domain(self, name: str) -> None:
        """Remove the (stopped) domain's definition, its managed-save image if any, and its lab vGPU record.
        Idempotent."""
        domain = self._lookup(name)
        if domain is not None:
            if self._call("cannot read domain state", domain.isActive):
                raise DriverError(f"domain {name} is still running; destroy it first", retryable=False)
            flags = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            self._call(f"cannot undefine domain {name}", domain.undefineFlags, flags)
        if self.lab:
            self.lab.store.detach(name)
            if not self.uri.startswith("test:"):
                Path(lab_serial_log(name)).unlink(missing_ok=True)

    def domain_info(self, name: str) -> DomainInfo | None:
        domain = self._lookup(name)
        return self._domain_info(domain) if domain is not None else None

    def wait_guest_ready(self, name: str, timeout_s: float) -> None:
        """Return once the started guest is up: a VM-lab guest's ready banner on its serial log, a real
        guest's qemu agent answering guest-ping; the test driver's pretend guests are up at once.
        Raises DriverError (not retryable) when it stops or stays silent for ``timeout_s``."""
        domain = self._domain(name)

        def is_running() -> bool:
            return bool(self._call("cannot read domain state", domain.isActive))

        if self.uri.startswith("test:"):
            if not is_running():
                raise DriverError(f"{name} is not running", retryable=False)
        elif self.lab:
            wait_for_banner(Path(lab_serial_log(name)), name=name, timeout_s=timeout_s, is_running=is_running)
        else:
            wait_for_agent(domain, name=name, timeout_s=timeout_s)
