"""The default policy's speed-ups decide exactly as a plain full scan does (issue 20).

"ours" keeps, per request shape, its candidate hosts in a heap updated from the cluster's change log
(``engine/hostindex.py``), and its fragmentation model memoises per GPU state (``SlotFragModel.gpu_slots``).
These tests replay random requests, departures, re-read hosts (``set_node``) and tie-order changes on a
small generated fleet, and check every decision against a reference that scores every host from scratch
(gap counts included), so a stale index, log or cache fails them.

Run: .venv/bin/pytest -q allocations/tests/test_placement_speedups.py
"""

import random

import pytest

from allocations.placement.engine import Cluster, GPUState, NodeState, Request, make_policy
from allocations.placement.engine.ladders import MILLI
from allocations.placement.engine.ours import DEAD_GAP_MILLI, GAP_WEIGHT, OursPolicy
from allocations.placement.engine.policy import MAX_SPEC_CPU, MAX_SPEC_GPU, free_milli_per_gpu
from allocations.placement.engine.state import SHARE_EMPTY, WHOLE_FREE
from allocations.tests.test_placement_engine import random_cluster, random_request, small_typical


def reference_place(ref: OursPolicy, c: Cluster, req: Request):
    """(node, gpus) "ours" must choose, scoring every host and every GPU choice; None when nothing fits."""
    share_ss = req.is_share and not c.vgpu
    gaps = [0] * (MILLI + 1)
    for row in c.left:
        for gpu_free in row:
            gaps[gpu_free] += 1
    best = None
    for i in range(c.n):
        if not c.node_fits(i, req):
            continue
        tie = (
            0.5 * (c.cpu_free[i] - req.cpu_milli) / MAX_SPEC_CPU + 0.5 * sum(c.left[i]) / MAX_SPEC_GPU,
            c.tie_rank[i],
        )
        for frag_delta, room, gpus in ref.node_options(i, req):
            if share_ss:
                rest = room - req.gpu_milli
                delta = (2 * gaps[rest] + 1 if rest >= DEAD_GAP_MILLI else 0) - (
                    2 * gaps[room] - 1 if DEAD_GAP_MILLI <= room < MILLI else 0
                )
                score = (GAP_WEIGHT * delta + frag_delta, room)
            else:
                score = (frag_delta, room)
            if best is None or (score, tie) < best[0]:
                best = ((score, tie), i, gpus)
    return None if best is None else (best[1], tuple(best[2]))


def fleet(rng, model, n=16):
    nodes = random_cluster(rng, n)
    if model == "vgpu":  # some GPUs vGPU-only or whole-only, as the portal's hosts have
        for node in nodes:
            for gpu in node.gpus:
                gpu.mode = rng.choice(["any", "any", "vgpu", "whole"])
    return Cluster(nodes, model)


@pytest.mark.parametrize("model", ["fractional", "vgpu"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_indexed_ours_decides_as_a_full_scan_through_departures_rereads_and_tie_order_changes(model, seed):
    rng = random.Random(seed)
    c = fleet(rng, model)
    fast = make_policy("ours", c, typical=small_typical())
    ref = OursPolicy(c, typical=small_typical())
    placed = []
    shapes = [random_request(rng) for _ in range(12)]  # repeated shapes, so indexes are reused
    checked = 0
    for _ in range(700):
        step = rng.random()
        if step < 0.12 and placed:
            req, d = placed.pop(rng.randrange(len(placed)))
            c.release(req, d)
            continue
        if step < 0.18:  # the portal re-reads a host: its free CPU/memory change, its GPUs stay
            i = rng.randrange(c.n)
            gpus = c.node_state(i).gpus
            c.set_node(i, rng.randint(0, c.cpu_cap[i]), rng.randint(0, c.mem_cap[i]), gpus)
            continue
        if step < 0.2:
            c.spread_ties(rng.randrange(1000))
            continue
        req = rng.choice(shapes) if rng.random() < 0.8 else random_request(rng)
        d = fast.place(req)
        expected = reference_place(ref, c, req)
        assert (None if d is None else (d.node_index, d.gpus)) == expected
        checked += 1
        if d is not None:
            c.apply(req, d)
            placed.append((req, d))
    assert checked > 400


def test_an_index_older_than_the_change_log_is_rebuilt():
    """A shape not asked for while the log was trimmed must not keep its entries from before."""
    nodes = [NodeState(f"n{i}", 64000, 262144, "T4", [GPUState() for _ in range(4)]) for i in range(3)]
    c = Cluster(nodes, "vgpu")
    fast = make_policy("ours", c, typical=small_typical())
    ref = OursPolicy(c, typical=small_typical())
    whole = Request(4000, 8192, 4, 1000)
    first = fast.place(whole)  # builds the index of ``whole``
    assert first is not None
    c.apply(whole, first)  # the node it chose has no free GPU now
    cpu_only = Request(1000, 1024)
    for _ in range(c.n * 8 + 4096):  # enough changes to trim the log past the index's position
        d = fast.place(cpu_only)
        c.apply(cpu_only, d)
        c.release(cpu_only, d)
    assert c.changes_since(1)[0] is None
    d = fast.place(whole)
    assert d.node_index != first.node_index
    assert (d.node_index, d.gpus) == reference_place(ref, c, whole)


def reference_frag(fm, model, cpu_free, mem_free, gpus_key):
    """``SlotFragModel``'s docstring, term by term, in its order."""
    ladder = fm.ladder(model)
    if fm.vgpu:
        free = free_milli_per_gpu(ladder, gpus_key)
        whole_free = sum(1 for slot, _ in gpus_key if slot in WHOLE_FREE)
    else:
        free = list(gpus_key)
        whole_free = sum(1 for f in gpus_key if f == MILLI)
    total = sum(free)
    if total <= 0:
        return 0.0
    fragment = 0.0
    for task, weight in fm.tasks:
        key = 0 if task.whole or not fm.vgpu else ladder.choose(task.gpu_milli, task.series, task.framebuffer)
        if (task.models is not None and model not in task.models) or key is None:
            fragment += weight * total
            continue
        if task.whole:
            copies, unit_num, unit_den = whole_free // task.num_gpu, task.num_gpu * MILLI, 1
        elif fm.vgpu:
            maxi = ladder.maxi[key]
            copies = sum(maxi if s in SHARE_EMPTY else (maxi - u if s == key else 0) for s, u in gpus_key)
            unit_num, unit_den = ladder.size[key] * MILLI, ladder.fb
        else:
            copies, unit_num, unit_den = sum(f // task.gpu_milli for f in free), task.gpu_milli, 1
        if task.cpu_milli > 0:
            copies = min(copies, cpu_free // task.cpu_milli)
        if task.memory_mib > 0:
            copies = min(copies, mem_free // task.memory_mib)
        usable = copies * unit_num // unit_den
        if usable < total:
            fragment += weight * (total - usable)
    starving = total - cpu_free * MILLI / fm.cpu_per_gpu_milli
    if starving > 0:
        fragment += 4.0 * starving
    return fragment


@pytest.mark.parametrize("model", ["fractional", "vgpu"])
def test_slot_fragmentation_memo_per_gpu_state_gives_the_definition(model):
    rng = random.Random(5)
    c = fleet(rng, model)
    pol = make_policy("ours", c, typical=small_typical())
    fm = pol.fm
    for _ in range(150):
        req = random_request(rng)
        d = pol.place(req)
        if d is not None:
            c.apply(req, d)
        for i in range(c.n):  # the same GPU state under several CPU/memory states (one memo entry)
            for cpu, mem in ((c.cpu_free[i], c.mem_free[i]), (rng.randint(0, 96000), rng.randint(0, 393216))):
                got = fm.frag(c.gmodel[i], cpu, mem, c.key[i][2])
                assert got == reference_frag(fm, c.gmodel[i], cpu, mem, c.key[i][2])
