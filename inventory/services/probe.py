"""Testing a libvirt URI before a host is registered: what discovery finds there, saving nothing.

``probe_host`` reads the URI through the same driver and telemetry source a registered host would
use (``connect.driver_for_uri``), and answers in words: the GPUs (PCI address, board, framebuffer),
the vGPU types each offers, CPUs and RAM, or why the host could not be read. Problems that do not
stop a registration (no NVIDIA GPU, telemetry that does not answer) are listed as warnings.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from inventory.drivers.base import DriverError
from inventory.drivers.libvirt import forget_connection
from inventory.drivers.telemetry import OK
from inventory.models import Host, VGPUProfile
from inventory.services.connect import driver_for_uri, telemetry_for_source

#: How long a test connection may take before the page says the host did not answer.
PROBE_TIMEOUT_S = 20


@dataclass(frozen=True)
class ProbedType:
    type_id: str
    name: str
    profile: str  # the catalog profile's name, or "" when the catalog lacks it
    available_instances: int


@dataclass(frozen=True)
class ProbedGPU:
    pci_address: str
    model: str
    product_name: str
    framebuffer_mib: int | None  # None: neither telemetry nor the catalog knows this board's size
    types: tuple[ProbedType, ...] = ()


@dataclass
class ProbeResult:
    uri: str
    ok: bool = False
    error: str = ""  # why the host could not be read, in words (``ok`` is then False)
    hostname: str = ""
    libvirt_version: str = ""
    cpu_cores: int = 0
    memory_mib: int = 0
    gpus: list[ProbedGPU] = field(default_factory=list)
    passthrough: str = ""
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "uri": self.uri,
            "ok": self.ok,
            "error": self.error,
            "hostname": self.hostname,
            "libvirt_version": self.libvirt_version,
            "cpu_cores": self.cpu_cores,
            "memory_mib": self.memory_mib,
            "passthrough": self.passthrough,
            "warnings": list(self.warnings),
            "gpus": [
                {
                    "pci_address": g.pci_address,
                    "model": g.model,
                    "product_name": g.product_name,
                    "framebuffer_mib": g.framebuffer_mib,
                    "vgpu_types": [t.__dict__ for t in g.types],
                }
                for g in self.gpus
            ],
        }


def _discover(uri: str, telemetry_source: str):
    driver = driver_for_uri(uri)
    discovery = driver.discover()
    sample = telemetry_for_source(telemetry_source, discovery.info.hostname or uri).sample(
        discovery.gpus, discovery.mdevs, discovery.domains
    )
    return discovery, sample


def _run_with_timeout(fn, timeout_s: float):
    """``fn()`` in a thread, so that a host that never answers (a dropped SYN, a hung ssh) costs the page
    ``timeout_s``, not minutes. The thread is left to finish on its own."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller below
            outcome["error"] = exc

    worker = threading.Thread(target=target, daemon=True, name="host-probe")
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise DriverError(f"the host did not answer within {timeout_s} s", retryable=True)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def probe_host(uri: str, telemetry_source: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> ProbeResult:
    """Run discovery on ``uri`` and say what it found. Saves nothing; never raises for the host's
    own failures (they are the result's ``error``)."""
    result = ProbeResult(uri=uri)
    in_use = Host.objects.filter(libvirt_uri=uri).exists()
    try:
        discovery, sample = _run_with_timeout(lambda: _discover(uri, telemetry_source), timeout_s)
    except DriverError as exc:
        result.error = f"Could not read {uri}: {exc}."
        return result
    finally:
        if not in_use:
            forget_connection(uri)  # a connection kept for a host that was never registered
    info = discovery.info
    result.ok = True
    result.hostname, result.libvirt_version = info.hostname, info.libvirt_version
    result.cpu_cores, result.memory_mib = info.cpu_cores, info.memory_mib
    result.passthrough = (
        "can hand whole GPUs to desktops" if discovery.passthrough.capable else "vGPUs only (no PCI passthrough)"
    ) + (f": {discovery.passthrough.note}" if discovery.passthrough.note else "")
    profiles = {p.name: p for p in VGPUProfile.objects.all()}
    boards = {p.board: p.board_framebuffer_mib for p in profiles.values()}
    measured = {g.pci_address: g.fb_total_mib for g in sample.gpus if not g.error and g.fb_total_mib}
    for gpu in discovery.gpus:
        types = tuple(
            ProbedType(
                t.type_id,
                t.name,
                t.profile_name if t.profile_name in profiles else "",
                t.available_instances,
            )
            for t in gpu.mdev_types
        )
        framebuffer = measured.get(gpu.pci_address) or boards.get(gpu.model)
        result.gpus.append(ProbedGPU(gpu.pci_address, gpu.model, gpu.product_name, framebuffer, types))
        unknown = sorted({t.name for t in types if not t.profile})
        if unknown:
            result.warnings.append(
                f"{gpu.pci_address}: vGPU types not in the profile catalog ({', '.join(unknown)}); "
                "desktops cannot use them until the catalog has them."
            )
    if not discovery.gpus:
        result.warnings.append("libvirt found no NVIDIA GPU on this host: it can serve only desktops without a GPU.")
    if sample.status != OK:
        result.warnings.append(f"Telemetry ({telemetry_source}) does not answer: {sample.status}")
    return result
