"""Which driver and telemetry source serve a host row. The only place that decides."""

from __future__ import annotations

from pathlib import Path

from inventory.choices import TelemetrySource
from inventory.drivers.libvirt import LabConfig, LibvirtDriver
from inventory.drivers.telemetry import NVMLTelemetry, SimulatedTelemetry
from inventory.models import Host


def driver_for(host: Host) -> LibvirtDriver:
    return LibvirtDriver(host.libvirt_uri, lab=LabConfig(Path(host.lab_xml)) if host.lab_xml else None)


def telemetry_for(host: Host):
    """NVML, or the simulated source where the host says so (never as a silent fallback)."""
    if host.telemetry_source == TelemetrySource.SIMULATED:
        return SimulatedTelemetry(host.name)
    return NVMLTelemetry()
