"""Which driver and telemetry source serve a host row. The only place that decides."""

from __future__ import annotations

from pathlib import Path

from inventory.choices import TelemetrySource
from inventory.drivers.libvirt import LabConfig, LibvirtDriver
from inventory.drivers.telemetry import NVMLTelemetry, SimulatedTelemetry
from inventory.models import Host


def lab_xml_for(uri: str) -> str:
    """The lab node file a ``test:///path.xml`` URI names (its GPUs' vGPUs are kept by the lab's store);
    "" for any other URI."""
    if not uri.startswith("test:///") or not uri.endswith(".xml"):
        return ""
    path = Path(uri.removeprefix("test://"))
    return str(path) if path.is_file() else ""


def driver_for_uri(uri: str, lab_xml: str | None = None) -> LibvirtDriver:
    lab_xml = lab_xml_for(uri) if lab_xml is None else lab_xml
    return LibvirtDriver(uri, lab=LabConfig(Path(lab_xml)) if lab_xml else None)


def driver_for(host: Host) -> LibvirtDriver:
    return driver_for_uri(host.libvirt_uri, host.lab_xml)


def telemetry_for_source(source: str, host_name: str):
    """NVML, or the simulated source where the host says so (never as a silent fallback)."""
    if source == TelemetrySource.SIMULATED:
        return SimulatedTelemetry(host_name)
    return NVMLTelemetry()


def telemetry_for(host: Host):
    return telemetry_for_source(host.telemetry_source, host.name)
