"""Choosing a host and GPU(s) for a desktop. Plain data in, a decision out; no ORM.

This module is what the request service calls today (best fit, below). ``engine`` holds the
trace-validated policies (first-fit, best-fit, random, fgd, ours) and ``replay`` the openb
trace protocol (``manage.py replay_trace``); wiring the request service to ``engine`` is the
next step (issue 5).

The request service loads candidates, asks ``place()``, then claims the choice
with conditional updates and retries with fresh candidates if another request
won the race. Rules enforced here (and again, atomically, by the claim):

- host online and not in maintenance (the caller only passes such hosts);
- vGPU: a GPU of the profile's board in vGPU mode that is empty or already runs
  the same profile (equal-size mode: one type per GPU), with a free instance;
- passthrough: ``gpu_count`` fully free passthrough GPUs of one host (of the
  requested model, if any);
- the host's free vCPUs and RAM.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Profile:
    name: str
    board: str
    framebuffer_mib: int
    max_per_gpu: int


@dataclass(frozen=True)
class Request:
    vcpus: int
    memory_mib: int
    profile: Profile | None = None  # None: whole GPUs in passthrough
    gpu_count: int = 1
    model: str = ""  # passthrough: required board model, "" = any


@dataclass(frozen=True)
class GPUState:
    id: int
    model: str
    mode: str  # vgpu | passthrough | disabled
    profile: str | None  # the profile it runs, None when empty
    instances_used: int
    max_instances: int  # of the profile it runs (0 when empty)


@dataclass(frozen=True)
class HostState:
    id: int
    name: str
    free_vcpus: int
    free_memory_mib: int
    gpus: tuple[GPUState, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Decision:
    host_id: int
    gpu_ids: tuple[int, ...]


class NoPlacement(Exception):
    """No host can take the request; ``message`` names the short resource."""

    def __init__(self, message: str, resource: str):
        super().__init__(message)
        self.message = message
        self.resource = resource


def _vgpu_fit(gpu: GPUState, profile: Profile) -> int | None:
    """Free instances of ``profile`` on ``gpu`` after placing one more; None when it does not fit."""
    if gpu.mode != "vgpu" or gpu.model != profile.board:
        return None
    if gpu.profile is None:
        return profile.max_per_gpu - 1 if gpu.instances_used == 0 else None
    if gpu.profile != profile.name or gpu.instances_used >= gpu.max_instances:
        return None
    return gpu.max_instances - gpu.instances_used - 1


def place(request: Request, hosts: list[HostState]) -> Decision:
    """Best fit: the GPU (and host) left with the least room, so partly used boards fill up before
    empty ones are opened and empty boards stay free for other profiles and passthrough."""
    if request.profile is not None:
        return _place_vgpu(request, request.profile, hosts)
    return _place_passthrough(request, hosts)


def _fits_host(request: Request, host: HostState) -> bool:
    return host.free_vcpus >= request.vcpus and host.free_memory_mib >= request.memory_mib


def _place_vgpu(request: Request, profile: Profile, hosts: list[HostState]) -> Decision:
    board_gpus = [g for h in hosts for g in h.gpus if g.mode == "vgpu" and g.model == profile.board]
    if not board_gpus:
        raise NoPlacement(f"No online host has an {profile.board} GPU in vGPU mode.", "gpu_model")
    best = None
    gpu_fits = False
    for host in hosts:
        for gpu in host.gpus:
            left = _vgpu_fit(gpu, profile)
            if left is None:
                continue
            gpu_fits = True
            if not _fits_host(request, host):
                continue
            # Prefer: fewest instances left on the GPU, an already-started GPU over an empty one,
            # then the host with the least CPU left; ties by host name and GPU id (deterministic).
            key = (left, gpu.profile is None, host.free_vcpus - request.vcpus, host.name, gpu.id)
            if best is None or key < best[0]:
                best = (key, Decision(host.id, (gpu.id,)))
    if best is not None:
        return best[1]
    if not gpu_fits:
        raise NoPlacement(
            f"No free {profile.name} instance: every {profile.board} GPU is full or runs another profile.",
            "gpu_instances",
        )
    raise NoPlacement(
        f"No host with a free {profile.name} instance also has {request.vcpus} free vCPUs and "
        f"{request.memory_mib} MiB of free RAM.",
        "host_cpu_memory",
    )


def _place_passthrough(request: Request, hosts: list[HostState]) -> Decision:
    wanted = request.model or "any model"
    best = None
    enough_gpus = False
    for host in hosts:
        free = sorted(
            g.id
            for g in host.gpus
            if g.mode == "passthrough" and g.instances_used == 0 and (not request.model or g.model == request.model)
        )
        if len(free) < request.gpu_count:
            continue
        enough_gpus = True
        if not _fits_host(request, host):
            continue
        key = (len(free) - request.gpu_count, host.free_vcpus - request.vcpus, host.name)
        if best is None or key < best[0]:
            best = (key, Decision(host.id, tuple(free[: request.gpu_count])))
    if best is not None:
        return best[1]
    if not enough_gpus:
        raise NoPlacement(
            f"No online host has {request.gpu_count} free whole GPU(s) ({wanted}) for passthrough.", "gpu_passthrough"
        )
    raise NoPlacement(
        f"No host with {request.gpu_count} free whole GPU(s) also has {request.vcpus} free vCPUs and "
        f"{request.memory_mib} MiB of free RAM.",
        "host_cpu_memory",
    )
