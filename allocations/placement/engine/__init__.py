"""Placement engine: plain data in, a decision out. Pure Python, no ORM, no third-party deps.

Two sharing models
------------------
``fractional``  a share-of-one-GPU request takes ``gpu_milli`` of one GPU; any mix of shares may
                sit on a GPU up to 1000.  Whole-GPU and multi-GPU requests take fully free GPUs of
                one host.
``vgpu``        a share request becomes the smallest vGPU profile of the GPU's board whose
                framebuffer is >= gpu_milli/1000 of the board; a GPU runs one profile type at a
                time (equal-size mode) with at most framebuffer/profile instances; an empty GPU
                takes any type.  Whole and multi-GPU requests take fully free GPUs (passthrough).

Every request must also fit the host's free CPU and memory, and the host's GPU model must be in
the request's allowed set (None = any model).

API
---
    cluster = Cluster(nodes, model="fractional" | "vgpu")    # nodes: list[NodeState]
    policy = make_policy(name, cluster, seed=42, typical=policy_typical(name, trace_requests))
    decision = policy.place(request)     # -> Decision | None; does NOT change the cluster
    if decision is not None:
        cluster.apply(request, decision) # commits it (raises ValueError if it breaks a rule)
    cluster.release(request, decision)   # undoes a committed decision (for departures)

``place()`` never mutates state, so a caller (e.g. a Django service) can ``place`` against a
snapshot, claim the choice in the database, and only then ``apply`` it.  Policies keep their caches
keyed by node state, so they stay valid across ``apply``/``release`` without notifications.

Modules
-------
``ladders``    vGPU profile ladders (the catalog's, or the traces' README ones) and ``MILLI``;
``state``      ``Cluster`` (the rules, apply/release), the slot codes, ``Request`` and ``Decision``;
``typical``    the typical-task distribution FGD and ours score against;
``policy``     the ``Policy`` base and the helpers the policies share;
``baselines``  first-fit, best-fit, random and FGD (see bench/README.md);
``ours``       the default policy (``OursPolicy``);
``hostindex``  its per-request-shape candidate hosts, ordered by score, kept from ``Cluster``'s change log.

This module names the policies (``POLICIES``, ``make_policy``) and re-exports what the rest of
the portal uses; the submodules never import it.
"""

from __future__ import annotations

from allocations.placement.engine.baselines import BestFitPolicy, FGDPolicy, FirstFitPolicy, RandomPolicy
from allocations.placement.engine.ladders import MILLI, Ladder, ProfileSpec, ladder_for
from allocations.placement.engine.ours import OursPolicy
from allocations.placement.engine.policy import Policy
from allocations.placement.engine.state import Cluster, Decision, GPUState, NodeState, Request
from allocations.placement.engine.typical import policy_typical

__all__ = [
    "MILLI",
    "POLICIES",
    "Cluster",
    "Decision",
    "GPUState",
    "Ladder",
    "NodeState",
    "ProfileSpec",
    "Request",
    "ladder_for",
    "make_policy",
    "policy_typical",
]

POLICIES: dict[str, type[Policy]] = {
    "first-fit": FirstFitPolicy,
    "best-fit": BestFitPolicy,
    "random": RandomPolicy,
    "fgd": FGDPolicy,
    "ours": OursPolicy,
}


def make_policy(name: str, cluster: Cluster, seed: int = 0, typical: list | None = None) -> Policy:
    name = name or "ours"
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose from {sorted(POLICIES)}") from None
    return cls(cluster, seed=seed, typical=typical)
