"""The typical-task distribution FGD and "ours" score fragmentation against: the most frequent
request shapes of a demand (the trace's pods, or the portal's learned templates)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from allocations.placement.engine.ladders import MILLI
from allocations.placement.engine.state import Request

COVERAGE = 0.95  # the FGD simulator's cut: the most frequent specs covering this share of the pods


@dataclass(frozen=True)
class TypicalPod:
    cpu_milli: int
    num_gpu: int
    gpu_milli: int
    models: frozenset | None
    freq: float
    memory_mib: int = 0  # mean memory of the spec (used by "ours" only)
    series: str = "Q"
    framebuffer: int = 0
    profile: int = 0

    @property
    def whole(self) -> bool:
        """Takes whole GPUs (rather than a share / one vGPU instance)."""
        return not (self.num_gpu == 1 and (0 < self.gpu_milli < MILLI or self.framebuffer > 0 or self.profile > 0))


def typical_pods(reqs: Iterable[Request], include_multi: bool = False) -> list[TypicalPod]:
    """Most frequent (cpu, gpu count, milli, gpu type) specs covering ``COVERAGE`` of the pods,
    CPU-only included, renormalised to sum to 1 (FGD simulator, step 1).  ``include_multi`` also
    keeps every multi-GPU spec below the cut (used by "ours")."""
    counts: Counter = Counter()
    memory: dict = {}
    total = 0
    for r in reqs:
        spec = (
            r.cpu_milli,
            r.gpu_milli if r.num_gpu > 0 else 0,
            r.num_gpu if r.gpu_milli > 0 else 0,
            r.models,
            r.series,
            r.framebuffer if r.num_gpu > 0 else 0,
            r.profile if r.num_gpu > 0 else 0,
        )
        counts[spec] += 1
        memory[spec] = memory.get(spec, 0) + r.memory_mib
        total += 1
    if not total:
        return []

    def model_key(models):
        return "|".join(sorted(models)) if models else ""

    # decreasing count; ties as the simulator's sort.Reverse(Less): larger cpu, milli, num, type
    by_count = sorted(
        counts.items(),
        key=lambda kv: (kv[1], kv[0][0], kv[0][1], kv[0][2], model_key(kv[0][3]), kv[0][4], kv[0][5], kv[0][6]),
        reverse=True,
    )
    kept, covered = [], 0
    for spec, count in by_count:
        if covered >= COVERAGE * total:
            if include_multi and spec[2] > 1:
                kept.append((spec, count))
                covered += count
            continue
        kept.append((spec, count))
        covered += count
    return [
        TypicalPod(
            spec[0], spec[2], spec[1], spec[3], count / covered, memory[spec] // count, spec[4], spec[5], spec[6]
        )
        for spec, count in kept
    ]


def policy_typical(name: str, demand: Iterable[Request]) -> list[TypicalPod]:
    """The typical-task distribution each policy uses, built from the trace's own requests:
    FGD the simulator's (95% coverage); ours also keeps every multi-GPU spec."""
    demand = list(demand)
    if name.startswith("ours"):
        return typical_pods(demand, include_multi=True)
    return typical_pods(demand)
