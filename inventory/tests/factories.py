from __future__ import annotations

from inventory.choices import GPUMode, HostState
from inventory.models import GPU, Host, VGPUProfile


def make_profile(name: str = "A40-8Q", **fields) -> VGPUProfile:
    board, _, rest = name.partition("-")
    size_gib = int("".join(ch for ch in rest.split("-")[-1] if ch.isdigit()))
    board_mib = fields.pop("board_framebuffer_mib", 49152 if board in ("A40", "L40S") else 16384)
    values = {
        "board": board,
        "board_framebuffer_mib": board_mib,
        "series": rest[-1],
        "framebuffer_mib": size_gib * 1024,
        "max_per_gpu": board_mib // (size_gib * 1024),
    }
    values.update(fields)
    return VGPUProfile.objects.create(name=name, **values)


def make_host(name: str = "gpu-1", **fields) -> Host:
    values = {"libvirt_uri": "test:///default", "state": HostState.ONLINE, "cpu_cores": 64, "memory_mib": 262144}
    values.update(fields)
    return Host.objects.create(name=name, **values)


def make_gpu(host: Host, pci_address: str = "0000:41:00.0", **fields) -> GPU:
    values = {"model": "A40", "framebuffer_mib": 49152, "mode": GPUMode.VGPU}
    values.update(fields)
    return GPU.objects.create(host=host, pci_address=pci_address, **values)
