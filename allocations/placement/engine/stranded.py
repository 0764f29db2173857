"""Stranded capacity: free GPU capacity that no request of a given set can use now.

A GPU's free capacity is ``Cluster.left`` (vgpu model: its free instances at their profile's share of
the board, or the whole board, 1000, when it runs nothing or is free to be taken whole; the unit the
replay's ``stranded_130`` counts in). It is usable when at least one request of the set could start on
it now under the engine's own rules: ``Cluster.gpu_can_host`` for the GPU (an empty board, or one
running the request's profile with a free instance; free whole for whole-GPU requests, with enough such
GPUs on the node) and ``Cluster.node_fits`` for the node (board model allowed, free CPU and memory).
What no request can use is stranded: FGD's "free capacity of the GPUs that cannot take the task",
taken over every request of the set at once. Pure: a cluster and requests in, numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass

from allocations.placement.engine.state import FREE_WHOLE, WHOLE_FREE, Cluster, Request

#: Why a GPU's free capacity is stranded (the first that applies).
CPU_MEMORY = "cpu_memory"  # requests could use the GPU, but the node has too little free CPU/memory for each
PROFILE = "profile"  # the GPU runs a profile no request takes
WHOLE_ONLY = "whole_only"  # free to be taken whole only, and no whole-GPU request fits here
NO_REQUEST = "no_request"  # no request can start anything on this board (model, series, share)


@dataclass(frozen=True)
class StrandedGPU:
    node: int
    gpu: int
    milli: int  # free capacity nobody can use, in milli-GPU
    reason: str


def gpu_takes(c: Cluster, i: int, g: int, req: Request) -> bool:
    """Could GPU g of node i take (its part of) ``req``, the node's free CPU and memory aside?"""
    if req.num_gpu <= 0 or (req.models is not None and c.gmodel[i] not in req.models):
        return False
    if req.is_share:
        size = c.share_profile(i, req)
        return size is not None and c.gpu_can_host(i, g, req, size)
    return c.prof[i][g] in WHOLE_FREE and c.nfree[i] >= req.num_gpu


def stranded_gpus(c: Cluster, requests: list[Request], nodes=None) -> list[StrandedGPU]:
    """Every GPU (of ``nodes``, default all) with free capacity that none of ``requests`` can use now."""
    if not c.vgpu:
        raise ValueError("stranded capacity is defined for the vgpu model")
    out = []
    for i in range(c.n) if nodes is None else nodes:
        for g in range(c.ngpu[i]):
            free = c.left[i][g]
            if free <= 0:
                continue
            takers = [r for r in requests if gpu_takes(c, i, g, r)]
            if any(c.node_fits(i, r) for r in takers):
                continue
            if takers:
                reason = CPU_MEMORY
            elif c.prof[i][g] > 0:
                reason = PROFILE
            elif c.prof[i][g] == FREE_WHOLE:
                reason = WHOLE_ONLY
            else:
                reason = NO_REQUEST
            out.append(StrandedGPU(i, g, free, reason))
    return out


def free_milli(c: Cluster, nodes=None) -> int:
    """All free GPU capacity of ``nodes`` (default all), in the same unit."""
    return sum(c.left[i][g] for i in (range(c.n) if nodes is None else nodes) for g in range(c.ngpu[i]))
