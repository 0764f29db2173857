"""GPU telemetry: NVML on real hosts, a simulated source chosen explicitly for lab hosts.

Both return the same plain data. A host whose NVML cannot be used reports why
in ``HostTelemetry.status`` (e.g. "NVML Shared Library Not Found") and no GPU
figures at all: never numbers that look real but are not.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from inventory.drivers.base import DomainInfo, GPUDevice, Mdev

OK = "ok"


@dataclass(frozen=True)
class VGPUTelemetry:
    mdev_uuid: str
    type_name: str
    sm_util: float
    mem_util: float
    encoder_util: float
    decoder_util: float
    fb_used_mib: int


@dataclass(frozen=True)
class GPUTelemetry:
    pci_address: str
    uuid: str
    name: str
    sm_util: float | None = None
    mem_util: float | None = None
    fb_used_mib: int | None = None
    fb_total_mib: int | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    encoder_util: float | None = None
    decoder_util: float | None = None
    vgpus: tuple[VGPUTelemetry, ...] = ()
    error: str = ""  # e.g. "GPU is lost": this board's figures are missing, the others are read


@dataclass(frozen=True)
class HostTelemetry:
    source: str  # nvml | simulated
    status: str  # "ok" or why nothing could be read
    sampled_at: float
    gpus: tuple[GPUTelemetry, ...] = field(default_factory=tuple)


def _pci_from_bus_id(bus_id) -> str:
    """NVML's 00000000:41:00.0 → libvirt's 0000:41:00.0"""
    text = bus_id.decode() if isinstance(bus_id, bytes) else str(bus_id)
    domain, bus, rest = text.lower().split(":")
    return f"{int(domain, 16):04x}:{bus}:{rest}"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NVMLTelemetry:
    """Reads every GPU and its vGPU instances through pynvml (``nvml`` is the module, injectable for tests)."""

    source = "nvml"

    def __init__(self, nvml=None):
        if nvml is None:
            import pynvml as nvml
        self.nvml = nvml

    def sample(self, *_ignored) -> HostTelemetry:
        nvml = self.nvml
        now = time.time()
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            return HostTelemetry(source=self.source, status=str(exc), sampled_at=now)
        try:
            gpus = tuple(self._gpu(index) for index in range(nvml.nvmlDeviceGetCount()))
        except nvml.NVMLError as exc:
            return HostTelemetry(source=self.source, status=str(exc), sampled_at=now)
        finally:
            try:
                nvml.nvmlShutdown()
            except nvml.NVMLError:
                pass
        return HostTelemetry(source=self.source, status=OK, sampled_at=now, gpus=gpus)

    def _gpu(self, index: int) -> GPUTelemetry:
        nvml = self.nvml
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        pci = _pci_from_bus_id(nvml.nvmlDeviceGetPciInfo(handle).busId)
        try:
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            name = _text(nvml.nvmlDeviceGetName(handle))
            rates = nvml.nvmlDeviceGetUtilizationRates(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            temperature = nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
            power_mw = nvml.nvmlDeviceGetPowerUsage(handle)
            encoder, _ = nvml.nvmlDeviceGetEncoderUtilization(handle)
            decoder, _ = nvml.nvmlDeviceGetDecoderUtilization(handle)
        except nvml.NVMLError as exc:  # GPU lost, fallen off the bus...: report it, keep reading the others
            return GPUTelemetry(pci_address=pci, uuid="", name="", error=str(exc))
        return GPUTelemetry(
            pci_address=pci,
            uuid=uuid,
            name=name,
            sm_util=float(rates.gpu),
            mem_util=float(rates.memory),
            fb_used_mib=memory.used // (1024 * 1024),
            fb_total_mib=memory.total // (1024 * 1024),
            temperature_c=float(temperature),
            power_w=round(power_mw / 1000.0, 1),
            encoder_util=float(encoder),
            decoder_util=float(decoder),
            vgpus=self._vgpus(handle),
        )

    def _vgpus(self, handle) -> tuple[VGPUTelemetry, ...]:
        nvml = self.nvml
        try:
            instances = nvml.nvmlDeviceGetActiveVgpus(handle)
        except nvml.NVMLError_NotSupported:
            return ()  # not a vGPU host board (passthrough, or no vGPU manager)
        if not instances:
            return ()
        try:
            samples = {s.vgpuInstance: s for s in nvml.nvmlDeviceGetVgpuUtilization(handle, 0)}
        except nvml.NVMLError_NotSupported:
            samples = {}
        result = []
        for instance in instances:
            sample = samples.get(instance)
            result.append(
                VGPUTelemetry(
                    mdev_uuid=_text(nvml.nvmlVgpuInstanceGetMdevUUID(instance)).lower(),
                    type_name=_text(nvml.nvmlVgpuTypeGetName(nvml.nvmlVgpuInstanceGetType(instance))),
                    sm_util=float(sample.smUtil.uiVal) if sample else 0.0,
                    mem_util=float(sample.memUtil.uiVal) if sample else 0.0,
                    encoder_util=float(sample.encUtil.uiVal) if sample else 0.0,
                    decoder_util=float(sample.decUtil.uiVal) if sample else 0.0,
                    fb_used_mib=nvml.nvmlVgpuInstanceGetFbUsage(instance) // (1024 * 1024),
                )
            )
        return tuple(result)


_SIZE = re.compile(r"-(\d+)[A-Z]$")


def _profile_mib(type_name: str) -> int:
    match = _SIZE.search(type_name.split()[-1]) if type_name else None
    return int(match.group(1)) * 1024 if match else 0


class SimulatedTelemetry:
    """Plausible figures for a lab host, following what actually runs there.

    Input is the host's own discovery (GPUs, mdevs and domains). An idle board
    reads near zero; a vGPU whose domain is running shows load, and its board the
    sum; a passthrough GPU in a running domain is busy as a whole. The numbers
    wander over time but are reproducible for a given host, board and second.
    """

    source = "simulated"

    def __init__(self, host: str, *, clock=time.time):
        self.host = host
        self.clock = clock

    def _rng(self, *parts, bucket: int) -> random.Random:
        seed = hashlib.sha256("|".join([self.host, *map(str, parts), str(bucket)]).encode()).digest()
        return random.Random(int.from_bytes(seed[:8], "big"))

    def sample(self, gpus: Iterable[GPUDevice], mdevs: Iterable[Mdev], domains: Iterable[DomainInfo]) -> HostTelemetry:
        now = self.clock()
        bucket = int(now // 2)
        running = {d.name: d for d in domains if d.state == "running"}
        busy_passthrough = {pci for d in running.values() for pci in d.passthrough_pci}
        mdevs = list(mdevs)
        result = []
        for gpu in gpus:
            board_mib = max((_profile_mib(t.name) for t in gpu.mdev_types), default=0) or 16384
            names = {t.type_id: t.name for t in gpu.mdev_types}
            vgpus = []
            for mdev in (m for m in mdevs if m.parent_pci == gpu.pci_address):
                rng = self._rng(mdev.uuid, bucket=bucket)
                active = mdev.domain in running
                size = _profile_mib(names.get(mdev.type_id, ""))
                vgpus.append(
                    VGPUTelemetry(
                        mdev_uuid=mdev.uuid,
                        type_name=names.get(mdev.type_id, mdev.type_id),
                        sm_util=round(rng.uniform(20, 75), 1) if active else 0.0,
                        mem_util=round(rng.uniform(10, 45), 1) if active else 0.0,
                        encoder_util=round(rng.uniform(5, 30), 1) if active else 0.0,
                        decoder_util=round(rng.uniform(0, 5), 1) if active else 0.0,
                        fb_used_mib=int(size * rng.uniform(0.35, 0.8)) if active else 0,
                    )
                )
            rng = self._rng(gpu.pci_address, bucket=bucket)
            if gpu.pci_address in busy_passthrough:
                sm, mem, fb = rng.uniform(40, 95), rng.uniform(20, 60), int(board_mib * rng.uniform(0.4, 0.9))
                enc = rng.uniform(0, 20)
            elif vgpus:
                slots = max((t.available_instances for t in gpu.mdev_types), default=1) or 1
                sm = min(100.0, sum(v.sm_util for v in vgpus) / max(slots, len(vgpus)) + rng.uniform(0, 1.5))
                mem = min(100.0, sum(v.mem_util for v in vgpus) / max(slots, len(vgpus)))
                fb = sum(v.fb_used_mib for v in vgpus) + 64 * len(vgpus)
                enc = min(100.0, sum(v.encoder_util for v in vgpus) / max(1, len(vgpus)))
            else:
                sm, mem, fb, enc = rng.uniform(0, 1.5), rng.uniform(0, 1.0), 0, 0.0
            result.append(
                GPUTelemetry(
                    pci_address=gpu.pci_address,
                    uuid=simulated_gpu_uuid(self.host, gpu.pci_address),
                    name=f"NVIDIA {gpu.model} (simulated)",
                    sm_util=round(sm, 1),
                    mem_util=round(mem, 1),
                    fb_used_mib=fb,
                    fb_total_mib=board_mib,
                    temperature_c=round(32 + 0.45 * sm + rng.uniform(-1, 1), 1),
                    power_w=round(30 + 2.2 * sm + rng.uniform(-2, 2), 1),
                    encoder_util=round(enc, 1),
                    decoder_util=round(rng.uniform(0, 2) if sm > 5 else 0.0, 1),
                    vgpus=tuple(vgpus),
                )
            )
        return HostTelemetry(source=self.source, status=OK, sampled_at=now, gpus=tuple(result))


def simulated_gpu_uuid(host: str, pci_address: str) -> str:
    digest = hashlib.sha256(f"{host}/{pci_address}".encode()).hexdigest()
    return f"GPU-{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
