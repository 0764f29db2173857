"""What every policy shares: the ``Policy`` base (its best-fit GPU choice inside a node) and the
helpers FGD and "ours" score with (a node's distinct GPU choices, its GPU states after one)."""

from __future__ import annotations

from collections.abc import Sequence

from allocations.placement.engine.ladders import MILLI, Ladder
from allocations.placement.engine.state import WHOLE, Cluster, Decision, Request

MAX_SPEC_CPU = 128000  # FGD simulator normalisation constants (BestFit score)
MAX_SPEC_GPU = 8000


class Policy:
    name = "base"

    def __init__(self, cluster: Cluster, seed: int = 0, typical: list | None = None):
        self.c = cluster
        self.seed = seed
        self.typical = typical or []

    def place(self, req: Request) -> Decision | None:  # pragma: no cover - abstract
        raise NotImplementedError

    # GPU choice inside a node: best fit (least left that still fits, lowest index on ties),
    # whole GPUs: the lowest-index fully free ones (simulator's AllocateExclusiveGpuId).
    def bestfit_gpus(self, i: int, req: Request) -> tuple[int, ...]:
        c = self.c
        if req.num_gpu <= 0:
            return ()
        if not req.is_share:
            free = [g for g in range(c.ngpu[i]) if c._is_free(i, g)]
            return tuple(free[: req.num_gpu])
        size = c.share_profile(i, req) if c.vgpu else 0
        best_gpu, best_left = -1, None
        for g in range(c.ngpu[i]):
            if c.gpu_can_host(i, g, req, size):
                left = c.left[i][g]
                if best_left is None or left < best_left:
                    best_gpu, best_left = g, left
        return (best_gpu,)


def free_milli_per_gpu(ladder: Ladder, gpus_key: tuple) -> list[int]:
    """Free capacity (milli) of each GPU of a vgpu-model state tuple of (slot code, used)."""
    return [ladder.free_milli(slot, used) if slot > 0 else (0 if slot == WHOLE else MILLI) for slot, used in gpus_key]


def gpus_key_after(c: Cluster, i: int, req: Request, gpus: Sequence[int], size: int) -> tuple:
    """Sorted GPU-state tuple of node i after placing req on gpus (without mutating)."""
    if c.vgpu:
        prof = list(c.prof[i])
        used = list(c.used[i])
        for g in gpus:
            if req.is_share:
                prof[g] = size
                used[g] += 1
            else:
                prof[g] = WHOLE
                used[g] = 1
        return tuple(sorted(zip(prof, used, strict=False)))
    left = list(c.left[i])
    for g in gpus:
        left[g] -= req.gpu_milli if req.is_share else MILLI
    return tuple(sorted(left))


def gpu_options(c: Cluster, i: int, req: Request) -> list[tuple[tuple[int, ...], int]]:
    """Distinct GPU choices on node i: list of (gpus tuple, size).  GPUs in the same state are
    interchangeable, so only the lowest-index one of each state is listed."""
    if req.num_gpu <= 0:
        return [((), 0)]
    if not req.is_share:
        free = [g for g in range(c.ngpu[i]) if c._is_free(i, g)]
        if len(free) < req.num_gpu:
            return []
        return [(tuple(free[: req.num_gpu]), 0)]
    size = c.share_profile(i, req) if c.vgpu else 0
    seen = set()
    options = []
    for g in range(c.ngpu[i]):
        if c.gpu_can_host(i, g, req, size):
            gpu_state = (c.prof[i][g], c.used[i][g]) if c.vgpu else c.left[i][g]
            if gpu_state not in seen:
                seen.add(gpu_state)
                options.append(((g,), size))
    return options
