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
    policy = make_policy(name, cluster, seed=42, typical=typical_pods(trace_requests))
    decision = policy.place(request)     # -> Decision | None; does NOT change the cluster
    if decision is not None:
        cluster.apply(request, decision) # commits it (raises ValueError if it breaks a rule)
    cluster.release(request, decision)   # undoes a committed decision (for departures)

``place()`` never mutates state, so a caller (e.g. a Django service) can ``place`` against a
snapshot, claim the choice in the database, and only then ``apply`` it.  Policies keep their caches
keyed by node state, so they stay valid across ``apply``/``release`` without notifications.

Policies: ``first-fit``, ``best-fit``, ``random``, ``fgd`` (baselines, see README) and ``ours``
(default; see ``OursPolicy``).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MILLI = 1000
MAX_SPEC_CPU = 128000  # FGD simulator normalisation constants (BestFit score)
MAX_SPEC_GPU = 8000

# Framebuffer (GiB) and equal-size profile sizes (GiB) per board model (README of the traces).
FRAMEBUFFER_GIB = {
    "P100": 16,
    "T4": 16,
    "V100M16": 16,
    "G2": 16,
    "G3": 16,
    "V100M32": 32,
    "A10": 24,
}
PROFILE_SIZES_GIB = {
    "P100": (1, 2, 4, 8, 16),
    "T4": (1, 2, 4, 8, 16),
    "V100M16": (1, 2, 4, 8, 16),
    "G2": (1, 2, 4, 8, 16),
    "G3": (1, 2, 4, 8, 16),
    "V100M32": (1, 2, 4, 8, 16, 32),
    "A10": (1, 2, 3, 4, 6, 8, 12, 24),
}
DEFAULT_FRAMEBUFFER_GIB = 16
DEFAULT_PROFILE_SIZES_GIB = (1, 2, 4, 8, 16)


# GPU slot codes in the vgpu model (a positive code is the key of the profile the GPU runs).
EMPTY = 0  # empty, may start any profile or be taken whole (the trace's vgpu model; "flexible" GPUs)
EMPTY_VGPU = -1  # empty, vGPU only (a GPU in vGPU mode)
FREE_WHOLE = -2  # free, whole only (a GPU in passthrough mode)
WHOLE = -3  # taken whole by one request
SHARE_EMPTY = (EMPTY, EMPTY_VGPU)  # may start a profile
WHOLE_FREE = (EMPTY, FREE_WHOLE)  # may be taken whole
HOME = {"any": EMPTY, "vgpu": EMPTY_VGPU, "whole": FREE_WHOLE}


@dataclass(frozen=True)
class ProfileSpec:
    """One vGPU profile of a board: ``key`` > 0 identifies it on the board (equal-size mode: a GPU
    runs one key at a time), ``size`` is its framebuffer in the ladder's unit."""

    key: int
    name: str
    size: int
    max_instances: int
    series: str = "Q"


class Ladder:
    """The profiles one board model offers, and which of them a request gets: the smallest profile
    of the request's series whose framebuffer is at least the requested share of the board (or at
    least an absolute framebuffer, for requests that name one)."""

    def __init__(self, model: str, framebuffer: int, profiles: Iterable[ProfileSpec]):
        self.model = model
        self.fb = framebuffer
        profiles = list(profiles)
        if any(p.key <= 0 for p in profiles) or len({p.key for p in profiles}) != len(profiles):
            raise ValueError(f"{model}: profile keys must be distinct and positive")
        self.size = {p.key: p.size for p in profiles}
        self.maxi = {p.key: p.max_instances for p in profiles}
        self.name = {p.key: p.name for p in profiles}
        self.by_series: dict[str, list[tuple[int, int]]] = {}
        for p in profiles:
            self.by_series.setdefault(p.series, []).append((p.size, p.key))
        for lst in self.by_series.values():
            lst.sort()
        self._choice: dict = {}

    def choose(self, gpu_milli: int, series: str = "Q", framebuffer: int = 0, profile: int = 0) -> int | None:
        """Key of the profile a share request gets on this board, None when the series has none big enough
        (a request naming a ``profile`` key gets that one, None on boards without it)."""
        if profile:
            return profile if profile in self.size else None
        ck = (gpu_milli, series, framebuffer)
        if ck in self._choice:
            return self._choice[ck]
        out = None
        for size, key in self.by_series.get(series, ()):
            if (size >= framebuffer) if framebuffer else (size * MILLI >= gpu_milli * self.fb):
                out = key
                break
        self._choice[ck] = out
        return out

    def free_milli(self, key: int, used: int) -> int:
        """Board capacity (milli) still free on a GPU running ``key`` with ``used`` instances."""
        return (self.maxi[key] - used) * self.size[key] * MILLI // self.fb

    def unit_milli(self, key: int) -> int:
        return self.size[key] * MILLI // self.fb


def trace_ladder(model: str) -> Ladder:
    """The traces' README ladders: Q-series sizes in GiB, framebuffer/size instances each."""
    fb = FRAMEBUFFER_GIB.get(model, DEFAULT_FRAMEBUFFER_GIB)
    sizes = PROFILE_SIZES_GIB.get(model, DEFAULT_PROFILE_SIZES_GIB)
    return Ladder(model, fb, (ProfileSpec(s, f"{model}-{s}Q", s, fb // s) for s in sizes))


_TRACE_LADDERS: dict[str, Ladder] = {}


def ladder_for(model: str, ladders: dict | None = None) -> Ladder:
    if ladders and model in ladders:
        return ladders[model]
    lad = _TRACE_LADDERS.get(model)
    if lad is None:
        lad = _TRACE_LADDERS[model] = trace_ladder(model)
    return lad


def profile_for(model: str, gpu_milli: int) -> int:
    """Smallest trace profile size (GiB) of ``model`` whose framebuffer >= gpu_milli/1000 of the board."""
    return ladder_for(model).choose(gpu_milli)


# --------------------------------------------------------------------------------------------
# Plain data types
# --------------------------------------------------------------------------------------------


@dataclass
class GPUState:
    """One physical GPU.  fractional: ``used_milli``.  vgpu: ``profile`` (the key of the profile it
    runs, 0 = none) and ``instances`` used; a GPU taken whole has ``passthrough=True``.  ``mode``
    says what it may serve: "any" (vGPU instances, or whole when empty: the traces' vgpu model and
    the portal's flexible GPUs), "vgpu" (instances only) or "whole" (whole requests only)."""

    used_milli: int = 0
    profile: int = 0
    instances: int = 0
    passthrough: bool = False
    mode: str = "any"


@dataclass
class NodeState:
    name: str
    cpu_milli: int
    memory_mib: int
    gpu_model: str
    gpus: list[GPUState]
    cpu_free: int | None = None
    memory_free: int | None = None

    def __post_init__(self):
        if self.cpu_free is None:
            self.cpu_free = self.cpu_milli
        if self.memory_free is None:
            self.memory_free = self.memory_mib


@dataclass(frozen=True)
class Request:
    cpu_milli: int
    memory_mib: int
    num_gpu: int = 0
    gpu_milli: int = 0  # per GPU; 1000 for whole GPUs
    models: frozenset | None = None  # allowed GPU models; None = any
    series: str = "Q"  # vgpu: the profile series a share request takes
    framebuffer: int = 0  # vgpu: absolute framebuffer wanted (ladder's unit); 0 = gpu_milli of the board
    profile: int = 0  # vgpu: the profile key wanted (a template naming a profile); 0 = chosen by size

    @property
    def is_share(self) -> bool:
        """One vGPU instance (vgpu) or a share of one GPU (fractional), rather than whole GPUs."""
        return self.num_gpu == 1 and (0 < self.gpu_milli < MILLI or self.framebuffer > 0 or self.profile > 0)

    @property
    def gpu_request_milli(self) -> int:
        """GPU request in milli-GPU (README): num_gpu*1000 for whole GPUs, else gpu_milli."""
        if self.num_gpu <= 0:
            return 0
        if self.gpu_milli >= MILLI or self.num_gpu > 1:
            return self.num_gpu * MILLI
        return self.gpu_milli


@dataclass(frozen=True)
class Decision:
    node_index: int
    node_name: str
    gpus: tuple[int, ...]
    milli: int  # share taken per GPU (fractional) / requested share (vgpu); 1000 for whole GPUs
    profile: str | None = None  # vgpu profile name for share requests, else None
    profile_key: int = 0  # its key in the board's ladder (GiB size for the trace ladders)


def parse_models(spec: str) -> frozenset | None:
    parts = frozenset(p for p in (spec or "").split("|") if p)
    return parts or None


# --------------------------------------------------------------------------------------------
# Cluster state with incremental bookkeeping
# --------------------------------------------------------------------------------------------


class Cluster:
    """Mutable cluster state.  Internally struct-of-arrays for speed; ``node_state(i)`` returns the
    plain dataclass view.  Per node it keeps a hashable ``key`` describing everything placement
    scores depend on (model, free CPU, GPU states as a sorted tuple); policies memoise on it.

    ``ladders`` maps board models to their vGPU profiles (the portal passes its catalog's); models
    it does not name use the traces' README ladders."""

    def __init__(self, nodes: Sequence[NodeState], model: str = "fractional", ladders: dict | None = None):
        if model not in ("fractional", "vgpu"):
            raise ValueError(f"unknown sharing model {model!r}")
        self.model = model
        self.vgpu = model == "vgpu"
        self.ladders = dict(ladders or {})
        n = len(nodes)
        self.n = n
        self.names = [nd.name for nd in nodes]
        self.gmodel = [nd.gpu_model for nd in nodes]
        self.cpu_cap = [nd.cpu_milli for nd in nodes]
        self.mem_cap = [nd.memory_mib for nd in nodes]
        self.cpu_free = [nd.cpu_free for nd in nodes]
        self.mem_free = [nd.memory_free for nd in nodes]
        self.ngpu = [len(nd.gpus) for nd in nodes]
        self.total_gpus = sum(self.ngpu)
        self.lad = [self.ladder(m) for m in self.gmodel]
        self.fb = [lad.fb for lad in self.lad]
        # fractional: left[i][g] milli left.  vgpu: prof[i][g] a slot code (profile key > 0, or
        # EMPTY / EMPTY_VGPU / FREE_WHOLE / WHOLE), used[i][g] instances (1 when taken whole),
        # home[i][g] the code it returns to when emptied; left[i][g] its free capacity in milli.
        self.left = [[MILLI - g.used_milli for g in nd.gpus] for nd in nodes]
        self.home = [[HOME[g.mode] for g in nd.gpus] for nd in nodes]
        self.prof = [[WHOLE if g.passthrough else (g.profile or HOME[g.mode]) for g in nd.gpus] for nd in nodes]
        self.used = [[1 if g.passthrough else g.instances for g in nd.gpus] for nd in nodes]
        if self.vgpu:
            for i in range(n):
                for g in range(self.ngpu[i]):
                    self.left[i][g] = self._vgpu_left(i, g)
        elif any(g.mode != "any" for nd in nodes for g in nd.gpus):
            raise ValueError("GPU modes are a vgpu-model notion")
        self.nfree = [0] * n  # GPUs that may be taken whole now
        self.nempty = [0] * n  # GPUs that may start a profile now (vgpu)
        self.maxleft = [0] * n
        self.key = [None] * n
        self.version = 0
        for i in range(n):
            self._refresh(i)
        self.by_model: dict[str, list[int]] = {}
        for i, m in enumerate(self.gmodel):
            self.by_model.setdefault(m, []).append(i)
        self._cand_cache: dict = {}
        self.name_rank = [0] * n
        for r, i in enumerate(sorted(range(n), key=lambda k: self.names[k])):
            self.name_rank[i] = r
        # The last tie-break of "ours": host name by default; the portal gives each process its own
        # random order (``spread_ties``), so web workers deciding at once rarely pick the same slot.
        self.tie_rank = self.name_rank

    def spread_ties(self, seed: int) -> None:
        order = list(range(self.n))
        random.Random(seed).shuffle(order)
        self.tie_rank = [0] * self.n
        for r, i in enumerate(order):
            self.tie_rank[i] = r

    # -- helpers ---------------------------------------------------------------------------
    def ladder(self, model: str) -> Ladder:
        return ladder_for(model, self.ladders)

    def _vgpu_left(self, i: int, g: int) -> int:
        """Free board capacity of GPU g in milli (free instances x profile share)."""
        s = self.prof[i][g]
        if s > 0:
            return self.lad[i].free_milli(s, self.used[i][g])
        return 0 if s == WHOLE else MILLI

    def _refresh(self, i: int) -> None:
        left = self.left[i]
        self.nfree[i] = sum(1 for g in range(self.ngpu[i]) if self._is_free(i, g))
        self.maxleft[i] = max(left) if left else 0
        if self.vgpu:
            self.nempty[i] = sum(1 for p in self.prof[i] if p in SHARE_EMPTY)
            gk = tuple(sorted(zip(self.prof[i], self.used[i], strict=False)))
        else:
            gk = tuple(sorted(left))
        self.key[i] = (self.gmodel[i], self.cpu_free[i], gk)

    def _is_free(self, i: int, g: int) -> bool:
        """May GPU g of node i be taken whole now?"""
        if self.vgpu:
            return self.prof[i][g] in WHOLE_FREE
        return self.left[i][g] == MILLI

    def set_node(self, i: int, cpu_free: int, memory_free: int, gpus: Sequence[GPUState]) -> None:
        """Replace node i's free CPU/memory and GPU states (same GPUs, same modes) with fresh ones,
        e.g. re-read from a database; policies' caches stay valid (they are keyed by node state)."""
        if len(gpus) != self.ngpu[i]:
            raise ValueError("set_node keeps the node's GPUs; rebuild the cluster when they change")
        self.cpu_free[i] = cpu_free
        self.mem_free[i] = memory_free
        for g, st in enumerate(gpus):
            if self.vgpu:
                self.prof[i][g] = WHOLE if st.passthrough else (st.profile or self.home[i][g])
                self.used[i][g] = 1 if st.passthrough else st.instances
                self.left[i][g] = self._vgpu_left(i, g)
            else:
                self.left[i][g] = MILLI - st.used_milli
        self._refresh(i)
        self.version += 1

    def candidates(self, models: frozenset | None) -> list[int]:
        """Node indexes whose GPU model is allowed (all nodes for None)."""
        if models is None:
            return self._all
        c = self._cand_cache.get(models)
        if c is None:
            c = sorted(i for m in models for i in self.by_model.get(m, ()))
            self._cand_cache[models] = c
        return c

    @property
    def _all(self) -> list[int]:
        a = self._cand_cache.get(None)
        if a is None:
            a = list(range(self.n))
            self._cand_cache[None] = a
        return a

    def node_state(self, i: int) -> NodeState:
        gpus = []
        modes = {v: k for k, v in HOME.items()}
        for g in range(self.ngpu[i]):
            if self.vgpu:
                p = self.prof[i][g]
                gpus.append(
                    GPUState(
                        used_milli=MILLI - self.left[i][g],
                        profile=p if p > 0 else 0,
                        instances=self.used[i][g] if p > 0 else 0,
                        passthrough=p == WHOLE,
                        mode=modes[self.home[i][g]],
                    )
                )
            else:
                gpus.append(GPUState(used_milli=MILLI - self.left[i][g]))
        return NodeState(
            self.names[i], self.cpu_cap[i], self.mem_cap[i], self.gmodel[i], gpus, self.cpu_free[i], self.mem_free[i]
        )

    # -- feasibility -----------------------------------------------------------------------
    def share_profile(self, i: int, req: Request) -> int | None:
        """Profile key a share request gets on node i's board (vgpu), None when none fits."""
        return self.lad[i].choose(req.gpu_milli, req.series, req.framebuffer, req.profile)

    def gpu_can_host(self, i: int, g: int, req: Request, size: int | None = 0) -> bool:
        """Can GPU g of node i take (its part of) ``req``?  size: vgpu profile key for share reqs."""
        if not req.is_share:
            return self._is_free(i, g)
        if not self.vgpu:
            return self.left[i][g] >= req.gpu_milli
        if size is None:
            return False
        s = self.prof[i][g]
        if s in SHARE_EMPTY:
            return True
        return s == size and self.used[i][g] < self.lad[i].maxi[s]

    def node_fits(self, i: int, req: Request) -> bool:
        """Host-level check: model allowed, CPU, memory and enough suitable GPUs."""
        if req.models is not None and self.gmodel[i] not in req.models:
            return False
        if self.cpu_free[i] < req.cpu_milli or self.mem_free[i] < req.memory_mib:
            return False
        if req.num_gpu <= 0:
            return True
        if not req.is_share:
            return self.nfree[i] >= req.num_gpu
        if not self.vgpu:
            return self.maxleft[i] >= req.gpu_milli
        size = self.share_profile(i, req)
        if size is None:
            return False
        if self.nempty[i] > 0:
            return True
        return any(self.gpu_can_host(i, g, req, size) for g in range(self.ngpu[i]))

    def check(self, req: Request, d: Decision) -> None:
        """Raise ValueError if decision ``d`` breaks any rule for ``req``."""
        i = d.node_index
        if not (0 <= i < self.n) or self.names[i] != d.node_name:
            raise ValueError("unknown node")
        if req.models is not None and self.gmodel[i] not in req.models:
            raise ValueError("GPU model not allowed")
        if self.cpu_free[i] < req.cpu_milli:
            raise ValueError("not enough free CPU")
        if self.mem_free[i] < req.memory_mib:
            raise ValueError("not enough free memory")
        if req.num_gpu <= 0:
            if d.gpus:
                raise ValueError("CPU-only request given GPUs")
            return
        if len(d.gpus) != req.num_gpu or len(set(d.gpus)) != req.num_gpu:
            raise ValueError("wrong number of GPUs")
        for g in d.gpus:
            if not (0 <= g < self.ngpu[i]):
                raise ValueError("no such GPU")
        if req.is_share:
            g = d.gpus[0]
            if self.vgpu:
                size = self.share_profile(i, req)
                if size is None:
                    raise ValueError("this board has no profile for the request")
                if d.profile_key != size or d.profile != self.lad[i].name[size]:
                    raise ValueError("wrong profile for this board")
                if not self.gpu_can_host(i, g, req, size):
                    raise ValueError("GPU cannot start a vGPU, runs another profile or has no free instance")
            elif self.left[i][g] < req.gpu_milli:
                raise ValueError("GPU share exceeds what is left")
        else:
            for g in d.gpus:
                if not self._is_free(i, g):
                    raise ValueError(
                        "whole-GPU request on a GPU that is not fully free (or not free to be taken whole)"
                    )

    # -- mutation --------------------------------------------------------------------------
    def apply(self, req: Request, d: Decision) -> None:
        self.check(req, d)
        i = d.node_index
        self.cpu_free[i] -= req.cpu_milli
        self.mem_free[i] -= req.memory_mib
        for g in d.gpus:
            if req.is_share:
                if self.vgpu:
                    self.prof[i][g] = d.profile_key
                    self.used[i][g] += 1
                    self.left[i][g] = self._vgpu_left(i, g)
                else:
                    self.left[i][g] -= req.gpu_milli
            else:
                self.left[i][g] = 0
                if self.vgpu:
                    self.prof[i][g] = WHOLE
                    self.used[i][g] = 1
        self._refresh(i)
        self.version += 1

    def release(self, req: Request, d: Decision) -> None:
        i = d.node_index
        self.cpu_free[i] += req.cpu_milli
        self.mem_free[i] += req.memory_mib
        for g in d.gpus:
            if req.is_share:
                if self.vgpu:
                    self.used[i][g] -= 1
                    if self.used[i][g] == 0:
                        self.prof[i][g] = self.home[i][g]
                    self.left[i][g] = self._vgpu_left(i, g)
                else:
                    self.left[i][g] += req.gpu_milli
            else:
                self.left[i][g] = MILLI
                if self.vgpu:
                    self.prof[i][g] = self.home[i][g]
                    self.used[i][g] = 0
        self._refresh(i)
        self.version += 1

    # -- accounting --------------------------------------------------------------------------
    def committed_milli(self) -> float:
        """GPU capacity committed to placed requests, in milli-GPU (vgpu: each vGPU counted at
        its profile's exact share of the board, a passthrough GPU as 1000)."""
        if not self.vgpu:
            return self.total_gpus * MILLI - sum(sum(row) for row in self.left)
        tot = 0.0
        for i in range(self.n):
            fb, size = self.fb[i], self.lad[i].size
            for s, u in zip(self.prof[i], self.used[i], strict=False):
                if s > 0:
                    tot += u * size[s] * MILLI / fb
                elif s == WHOLE:
                    tot += MILLI
        return tot

    def make_decision(self, i: int, gpus: Sequence[int], req: Request) -> Decision:
        if req.num_gpu <= 0:
            return Decision(i, self.names[i], (), 0)
        if req.is_share:
            if self.vgpu:
                s = self.share_profile(i, req)
                return Decision(i, self.names[i], tuple(gpus), req.gpu_milli, self.lad[i].name[s], s)
            return Decision(i, self.names[i], tuple(gpus), req.gpu_milli)
        return Decision(i, self.names[i], tuple(gpus), MILLI)


# --------------------------------------------------------------------------------------------
# Typical-task distribution (FGD)
# --------------------------------------------------------------------------------------------


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


def typical_pods(reqs: Iterable[Request], coverage: float = 0.95, include_multi: bool = False) -> list[TypicalPod]:
    """Most frequent (cpu, gpu count, milli, gpu type) specs covering ``coverage`` of the pods,
    CPU-only included, renormalised to sum to 1 (FGD simulator, step 1).  ``include_multi`` also
    keeps every multi-GPU spec below the cut (used by "ours")."""
    cnt: Counter = Counter()
    mem: dict = {}
    total = 0
    for r in reqs:
        k = (
            r.cpu_milli,
            r.gpu_milli if r.num_gpu > 0 else 0,
            r.num_gpu if r.gpu_milli > 0 else 0,
            r.models,
            r.series,
            r.framebuffer if r.num_gpu > 0 else 0,
            r.profile if r.num_gpu > 0 else 0,
        )
        cnt[k] += 1
        mem[k] = mem.get(k, 0) + r.memory_mib
        total += 1
    if not total:
        return []

    def model_key(m):
        return "|".join(sorted(m)) if m else ""

    # decreasing count; ties as the simulator's sort.Reverse(Less): larger cpu, milli, num, type
    items = sorted(
        cnt.items(),
        key=lambda kv: (kv[1], kv[0][0], kv[0][1], kv[0][2], model_key(kv[0][3]), kv[0][4], kv[0][5], kv[0][6]),
        reverse=True,
    )
    out, cum = [], 0
    for k, c in items:
        if cum >= coverage * total:
            if include_multi and k[2] > 1:
                out.append((k, c))
                cum += c
            continue
        out.append((k, c))
        cum += c
    return [TypicalPod(k[0], k[2], k[1], k[3], c / cum, mem[k] // c, k[4], k[5], k[6]) for k, c in out]


# --------------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------------


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
            out = [g for g in range(c.ngpu[i]) if c._is_free(i, g)]
            return tuple(out[: req.num_gpu])
        size = c.share_profile(i, req) if c.vgpu else 0
        best, bl = -1, None
        for g in range(c.ngpu[i]):
            if c.gpu_can_host(i, g, req, size):
                lv = c.left[i][g]
                if bl is None or lv < bl:
                    best, bl = g, lv
        return (best,)


class FirstFitPolicy(Policy):
    """First node in host-name order that fits; best-fit GPU inside it."""

    name = "first-fit"

    def __init__(self, cluster, seed=0, typical=None):
        super().__init__(cluster, seed, typical)
        self.order = sorted(range(cluster.n), key=lambda i: cluster.names[i])

    def place(self, req):
        c = self.c
        for i in self.order:
            if c.node_fits(i, req):
                return c.make_decision(i, self.bestfit_gpus(i, req), req)
        return None


class RandomPolicy(Policy):
    """A uniformly random feasible node (simulator's Random score plugin); inside it a uniformly
    random GPU that fits (simulator's random GPU selection) or, with gpu="bestfit", best fit."""

    name = "random"

    def __init__(self, cluster, seed=0, typical=None, gpu: str = "random"):
        super().__init__(cluster, seed, typical)
        self.rng = random.Random(seed)
        self.gpu = gpu

    def place(self, req):
        c = self.c
        feas = [i for i in c.candidates(req.models) if c.node_fits(i, req)]
        if not feas:
            return None
        i = feas[self.rng.randrange(len(feas))]
        if self.gpu == "random" and req.is_share:
            size = c.share_profile(i, req) if c.vgpu else 0
            fit = [g for g in range(c.ngpu[i]) if c.gpu_can_host(i, g, req, size)]
            return c.make_decision(i, (fit[self.rng.randrange(len(fit))],), req)
        return c.make_decision(i, self.bestfit_gpus(i, req), req)


class BestFitPolicy(Policy):
    """Simulator's BestFit: node score 0.5*cpu_left/128 cores + 0.5*gpu_left/8 GPUs after placing
    (lower better), scaled to the integer score int((1-x)*100) as the simulator does; ties to the
    lexicographically smallest host name; best-fit GPU inside the node."""

    name = "best-fit"

    def __init__(self, cluster, seed=0, typical=None, quantize: bool = True):
        super().__init__(cluster, seed, typical)
        self.quantize = quantize

    def place(self, req):
        c = self.c
        cpu, mem = req.cpu_milli, req.memory_mib
        cpu_free, mem_free, left = c.cpu_free, c.mem_free, c.left
        best_i, best_s, best_r = -1, None, None
        rank = c.name_rank
        for i in c.candidates(req.models):
            if cpu_free[i] < cpu or mem_free[i] < mem or not c.node_fits(i, req):
                continue
            if req.num_gpu <= 0:
                g_req = 0
            elif req.is_share and c.vgpu:
                g_req = c.lad[i].unit_milli(c.share_profile(i, req))
            else:
                g_req = req.gpu_request_milli
            x = 0.5 * (cpu_free[i] - cpu) / MAX_SPEC_CPU + 0.5 * (sum(left[i]) - g_req) / MAX_SPEC_GPU
            s = int((1.0 - x) * 100) if self.quantize else -x
            if best_s is None or s > best_s or (s == best_s and rank[i] < best_r):
                best_i, best_s, best_r = i, s, rank[i]
        if best_i < 0:
            return None
        return c.make_decision(best_i, self.bestfit_gpus(best_i, req), req)


# ---- FGD ------------------------------------------------------------------------------------


def _sigmoid(x: float) -> float:
    if x < -700:
        return 0.0
    return 1.0 / (1.0 + math.exp(-x))


def _lefts(lad: Ladder, gk: tuple) -> list[int]:
    """Free capacity (milli) of each GPU of a vgpu-model state tuple of (slot code, used)."""
    return [lad.free_milli(s, u) if s > 0 else (0 if s == WHOLE else MILLI) for s, u in gk]


class FragModel:
    """Node GPU fragmentation against a typical-task distribution (FGD, ATC'23).

    For a node state, the fragment amount is sum_t p_t * frag_t where, for each typical task t:
      * CPU-only task or task that cannot use this GPU model: all free GPU capacity;
      * task fits (enough suitable GPUs and the node's free CPU): free capacity of the GPUs that
        cannot take the task (fractional: left < milli; vgpu: runs another profile / no slot);
      * otherwise: all free GPU capacity.
    Free capacity is in milli-GPU (vgpu: free instances x profile share of the board)."""

    def __init__(self, typical: list[TypicalPod], vgpu: bool, mem_aware: bool = False, ladder=ladder_for):
        self.typical = typical
        self.vgpu = vgpu
        self.mem_aware = mem_aware
        self.ladder = ladder
        self._per_model: dict = {}
        self.memo: dict = {}

    def tasks_for(self, model: str):
        t = self._per_model.get(model)
        if t is None:
            always = 0.0
            lst = []
            lad = self.ladder(model)
            for tp in self.typical:
                whole = tp.whole
                size = 0 if whole or not self.vgpu else lad.choose(tp.gpu_milli, tp.series, tp.framebuffer, tp.profile)
                if tp.num_gpu == 0 or tp.gpu_milli == 0:
                    always += tp.freq
                elif (tp.models is not None and model not in tp.models) or size is None:
                    always += tp.freq
                else:
                    lst.append((tp.freq, tp.cpu_milli, tp.num_gpu, tp.gpu_milli, whole, size, tp.memory_mib))
            t = (always, tuple(lst), lad)
            self._per_model[model] = t
        return t

    def frag(self, model: str, cpu_free: int, gk: tuple, mem_free: int = 0) -> float:
        """gk: fractional: sorted tuple of milli left; vgpu: sorted tuple of (profile, used)."""
        key = (model, cpu_free, gk, mem_free) if self.mem_aware else (model, cpu_free, gk)
        v = self.memo.get(key)
        if v is not None:
            return v
        always, tasks, lad = self.tasks_for(model)
        if self.vgpu:
            lefts = _lefts(lad, gk)
        else:
            lefts = gk
        total = sum(lefts)
        f = always * total
        if total > 0:
            mem_aware = self.mem_aware
            for p, tc, tn, tm, whole, size, tmem in tasks:
                if cpu_free < tc or (mem_aware and mem_free < tmem):
                    f += p * total
                    continue
                cnt = 0
                small = 0
                if self.vgpu:
                    for (s, _u), lv in zip(gk, lefts, strict=False):
                        if (s in WHOLE_FREE) if whole else (s in SHARE_EMPTY or (s == size and lv > 0)):
                            cnt += 1
                        else:
                            small += lv
                else:
                    for lv in lefts:
                        if lv >= tm:
                            cnt += 1
                        else:
                            small += lv
                f += p * (small if cnt >= tn else total)
        if len(self.memo) > 2_000_000:
            self.memo.clear()
        self.memo[key] = f
        return f


def _after_key(c: Cluster, i: int, req: Request, gpus: Sequence[int], size: int):
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


def gpu_options(c: Cluster, i: int, req: Request):
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
    out = []
    for g in range(c.ngpu[i]):
        if c.gpu_can_host(i, g, req, size):
            st = (c.prof[i][g], c.used[i][g]) if c.vgpu else c.left[i][g]
            if st not in seen:
                seen.add(st)
                out.append(((g,), size))
    return out


def _bf_tiebreak(c, i, req):
    return (0.5 * (c.cpu_free[i] - req.cpu_milli) / MAX_SPEC_CPU + 0.5 * sum(c.left[i]) / MAX_SPEC_GPU, c.name_rank[i])


class FGDPolicy(Policy):
    """Fragmentation Gradient Descent: place where the node's expected fragmentation (against the
    typical tasks) grows least.  Score = int(sigmoid((F_before - F_after)/1000) * 100) like the
    simulator; node ties broken by a per-seed random node order; inside the node the GPU with the
    best score (lowest index on ties)."""

    name = "fgd"

    def __init__(self, cluster, seed=0, typical=None, quantize: bool = True, tie: str = "random"):
        super().__init__(cluster, seed, typical)
        self.fm = FragModel(self.typical, cluster.vgpu, ladder=cluster.ladder)
        self.tie = tie
        rng = random.Random(seed)
        perm = list(range(cluster.n))
        rng.shuffle(perm)
        self.rank = [0] * cluster.n
        for r, i in enumerate(perm):
            self.rank[i] = r
        self.quantize = quantize
        self.memo: dict = {}

    def _tiebreak(self, i, req):
        if self.tie == "bestfit":
            return _bf_tiebreak(self.c, i, req)
        if self.tie == "worstfit":
            return (-_bf_tiebreak(self.c, i, req)[0], self.c.name_rank[i])
        if self.tie == "name":
            return self.c.name_rank[i]
        raise ValueError(self.tie)

    def _score(self, x: float) -> float:
        if self.quantize == "gpuonly":
            return x if self._cur.num_gpu > 0 else int(_sigmoid(x / 1000.0) * 100)
        if self.quantize == "cpuonly":
            return int(_sigmoid(x / 1000.0) * 100) if self._cur.num_gpu > 0 else x
        if isinstance(self.quantize, (int, float)) and not isinstance(self.quantize, bool):
            return int(_sigmoid(x / 1000.0) * self.quantize)
        if self.quantize:
            return int(_sigmoid(x / 1000.0) * 100)
        return x

    def node_eval(self, i: int, req: Request):
        """(score, gpus) of the best GPU choice on node i (node assumed feasible)."""
        c = self.c
        f0 = self.fm.frag(c.gmodel[i], c.cpu_free[i], c.key[i][2])
        cpu_after = c.cpu_free[i] - req.cpu_milli
        best = None
        for gpus, size in gpu_options(c, i, req):
            f1 = self.fm.frag(c.gmodel[i], cpu_after, _after_key(c, i, req, gpus, size))
            s = self._score(f0 - f1)
            if best is None or s > best[0]:
                best = (s, gpus)
        return best

    def place(self, req):
        c = self.c
        cpu, mem = req.cpu_milli, req.memory_mib
        cpu_free, mem_free, key = c.cpu_free, c.mem_free, c.key
        rank = self.rank
        mk = (cpu, req.num_gpu, req.gpu_milli, req.series, req.framebuffer, req.profile)
        self._cur = req
        memo = self.memo.get(mk)
        if memo is None:
            memo = self.memo[mk] = {}
        best_i, best_s, best_r = -1, None, None
        for i in c.candidates(req.models):
            if cpu_free[i] < cpu or mem_free[i] < mem:
                continue
            k = key[i]
            s = memo.get(k)
            if s is None:
                if c.node_fits(i, req):
                    s = self.node_eval(i, req)[0]
                else:
                    s = False
                memo[k] = s
            if s is False:
                continue
            if self.tie != "random":
                r = self._tiebreak(i, req)
            else:
                r = rank[i]
            if best_s is None or s > best_s or (s == best_s and r < best_r):
                best_i, best_s, best_r = i, s, r
        if best_i < 0:
            return None
        gpus = self.node_eval(best_i, req)[1]
        # lowest index GPU among equally scored states: node_eval lists lowest index per state
        return c.make_decision(best_i, gpus, req)


POLICIES = {
    "first-fit": FirstFitPolicy,
    "best-fit": BestFitPolicy,
    "random": RandomPolicy,
    "fgd": FGDPolicy,
}


def make_policy(name: str, cluster: Cluster, seed: int = 0, typical: list | None = None, **kw) -> Policy:
    name = name or "ours"
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose from {sorted(POLICIES)}") from None
    return cls(cluster, seed=seed, typical=typical, **kw)


# ---- ours -------------------------------------------------------------------------------------


class SlotFragModel:
    """Expected stranded GPU capacity of one node ("slot fragmentation"), lower is better.

    For every typical task t (frequency p_t): fill the node with copies of t as far as GPU slots,
    free CPU and free memory allow; what is left of the node's free GPU capacity is t's fragment:
        frag_t = free - min(free, unit_t * min(gpu_slots_t, cpu_free // cpu_t, mem_free // mem_t))
    (fractional: gpu_slots = sum over GPUs of left // milli, or free GPUs // n for whole-GPU tasks;
    vgpu: free instances of t's profile on GPUs running it, plus whole empty GPUs; unit_t = the
    capacity t commits: its profile's share of the board).  The node's fragment is
    sum_t w_t * frag_t, with w_t = p_t, multiplied by ``multi_boost`` for multi-GPU tasks, plus
    ``lam`` * max(0, free - cpu_free / rho): free GPU capacity the node's CPU cannot feed at
    ``rho`` cores per GPU (the CPU-starvation term).  Tasks that may not use this model count
    all free capacity as fragment."""

    def __init__(
        self,
        typical,
        vgpu: bool,
        mem: bool = True,
        lam: float = 4.0,
        rho: float = 8.0,
        multi_boost: float = 4.0,
        scarce_boost: float = 1.0,
        ladder=ladder_for,
    ):
        self.vgpu = vgpu
        self.ladder = ladder
        self.mem = mem
        self.lam = lam
        self.rho_milli = rho * MILLI  # milli-CPU per GPU
        gpu_tasks = [tp for tp in typical if tp.num_gpu > 0 and tp.gpu_milli > 0]
        tot = sum(tp.freq for tp in gpu_tasks) or 1.0
        self.tasks = [(tp, tp.freq / tot * (multi_boost if tp.num_gpu > 1 else 1.0)) for tp in gpu_tasks]
        self.multi = [k for k, (tp, _) in enumerate(self.tasks) if tp.num_gpu > 1]
        self.scarce_boost = scarce_boost
        self._per_model: dict = {}
        self.memo: dict = {}

    def tasks_for(self, model, scarce=()):
        key = (model, scarce)
        t = self._per_model.get(key)
        if t is None:
            lad = self.ladder(model)
            lst = []
            for k, (tp, p) in enumerate(self.tasks):
                if scarce and k in scarce:
                    p *= self.scarce_boost
                whole = tp.whole
                size = 0 if whole or not self.vgpu else lad.choose(tp.gpu_milli, tp.series, tp.framebuffer, tp.profile)
                if (tp.models is not None and model not in tp.models) or size is None:
                    lst.append((p, None, 0, 0, True, 0, 0, 0, 1, 0))
                    continue
                # usable capacity of k copies = k * num // den (vgpu: floored once, like free capacity)
                if whole:
                    num, den = tp.num_gpu * MILLI, 1
                elif self.vgpu:
                    num, den = lad.size[size] * MILLI, lad.fb
                else:
                    num, den = tp.gpu_milli, 1
                lst.append(
                    (
                        p,
                        tp.cpu_milli,
                        tp.num_gpu,
                        tp.gpu_milli,
                        whole,
                        size,
                        tp.memory_mib if self.mem else 0,
                        num,
                        den,
                        lad.maxi[size] if size else 0,
                    )
                )
            t = (tuple(lst), lad)
            self._per_model[key] = t
        return t

    def frag(self, model, cpu_free, mem_free, gk, scarce=()):
        key = (model, cpu_free, mem_free if self.mem else 0, gk, scarce)
        v = self.memo.get(key)
        if v is not None:
            return v
        tasks, lad = self.tasks_for(model, scarce)
        vg = self.vgpu
        if vg:
            lefts = _lefts(lad, gk)
            nfree = sum(1 for s, _u in gk if s in WHOLE_FREE)
        else:
            lefts = gk
            nfree = sum(1 for lv in gk if lv == MILLI)
        total = sum(lefts)
        f = 0.0
        if total > 0:
            for p, tc, tn, tm, whole, size, tmem, num, den, per in tasks:
                if tc is None:
                    f += p * total
                    continue
                if whole:
                    k = nfree // tn
                elif vg:
                    k = 0
                    for s, u in gk:
                        if s in SHARE_EMPTY:
                            k += per
                        elif s == size:
                            k += per - u
                else:
                    k = 0
                    for lv in lefts:
                        k += lv // tm
                if k and tc > 0:
                    kc = cpu_free // tc
                    if kc < k:
                        k = kc
                if k and tmem > 0:
                    km = mem_free // tmem
                    if km < k:
                        k = km
                usable = k * num // den
                if usable < total:
                    f += p * (total - usable)
            if self.lam:
                starving = total - cpu_free * MILLI / self.rho_milli
                if starving > 0:
                    f += self.lam * starving
        if len(self.memo) > 1_000_000:
            self.memo.clear()
        self.memo[key] = f
        return f


class OursPolicy(Policy):
    """Default policy.

    Score of placing a request on node i with GPU choice g (lower is better):

      1. fractional share requests only: the sum-of-squares change of the cluster's gap
         histogram, eps * (2 N[h-s] + 1 - 2 N[h] + 1), where N[x] counts GPUs with x milli free
         (0 < x < 1000) and gaps below ``theta`` are dead (not counted).  It keeps the supply of
         every gap size in line with the requests that can fill it (Csirik et al.'s Sum-of-
         Squares online bin packing), instead of piling up gaps nothing will fill;
      2. the change of the node's expected stranded capacity (``SlotFragModel``: per typical task
         the capacity it could not use if it filled the node, limited by GPU slots, CPU and
         memory; plus a CPU-starvation term; multi-GPU tasks weighted up so whole nodes stay free
         for them);
      3. ties: the GPU with least room (best fit), then the node with least leftover
         (0.5 CPU/128 cores + 0.5 GPU/8 GPUs), then host name.  Deterministic.

    vgpu: the slot model counts free instances per profile type, so a share request fills a GPU
    that already runs its profile before it opens an empty GPU, and goes to the board whose
    ladder commits least; whole GPUs stay free for whole/multi-GPU requests."""

    name = "ours"

    def __init__(
        self,
        cluster,
        seed=0,
        typical=None,
        mem=True,
        lam=4.0,
        rho=8.0,
        multi_boost=4.0,
        tie="bestfit",
        reserve=0,
        scarce_boost=4.0,
        eps=1000.0,
        theta=80,
    ):
        super().__init__(cluster, seed, typical)
        self.fm = SlotFragModel(
            self.typical,
            cluster.vgpu,
            mem=mem,
            lam=lam,
            rho=rho,
            multi_boost=multi_boost,
            scarce_boost=scarce_boost,
            ladder=cluster.ladder,
        )
        self.tie = tie
        self.memo: dict = {}
        self.optmemo: dict = {}
        self.reserve = reserve
        self.eps = eps if not cluster.vgpu else 0.0
        self.theta = theta
        self._last_keys = [None] * cluster.n
        self._capable = [0] * cluster.n
        self._cap_count = [0] * len(self.fm.multi)
        self.gaps = [0] * (MILLI + 1)  # fractional: number of GPUs with x milli free

    # -- incremental cluster-wide state ------------------------------------------------------
    def _capable_mask(self, i):
        c = self.c
        mask = 0
        for b, k in enumerate(self.fm.multi):
            tp = self.fm.tasks[k][0]
            if (
                (tp.models is None or c.gmodel[i] in tp.models)
                and c.nfree[i] >= tp.num_gpu
                and c.cpu_free[i] >= tp.cpu_milli
                and c.mem_free[i] >= tp.memory_mib
            ):
                mask |= 1 << b
        return mask

    def _sync(self):
        """Bring gap counts / reserve counts up to date with nodes whose state changed."""
        c = self.c
        last, keys = self._last_keys, c.key
        track_gaps = not c.vgpu and self.eps
        track_cap = self.reserve and self.fm.multi
        if not (track_gaps or track_cap):
            return
        gaps = self.gaps
        for i in range(c.n):
            k = keys[i]
            if last[i] is k:
                continue
            if track_gaps:
                if last[i] is not None:
                    for lv in last[i][2]:
                        gaps[lv] -= 1
                for lv in k[2]:
                    gaps[lv] += 1
            last[i] = k
            if track_cap:
                old, new = self._capable[i], self._capable_mask(i)
                if old != new:
                    cnt = self._cap_count
                    for b in range(len(cnt)):
                        cnt[b] += ((new >> b) & 1) - ((old >> b) & 1)
                    self._capable[i] = new

    def _scarce(self):
        if not self.reserve or not self.fm.multi:
            return ()
        return tuple(k for b, k in enumerate(self.fm.multi) if self._cap_count[b] <= self.reserve)

    # -- scoring ---------------------------------------------------------------------------
    def node_options(self, i, req, scarce=()):
        """[(delta_frag, room, gpus)] for each distinct GPU choice on node i."""
        c = self.c
        fm = self.fm
        m = c.gmodel[i]
        f0 = fm.frag(m, c.cpu_free[i], c.mem_free[i], c.key[i][2], scarce)
        cpu_after = c.cpu_free[i] - req.cpu_milli
        mem_after = c.mem_free[i] - req.memory_mib
        out = []
        for gpus, size in gpu_options(c, i, req):
            f1 = fm.frag(m, cpu_after, mem_after, _after_key(c, i, req, gpus, size), scarce)
            out.append((round(f1 - f0, 6), sum(c.left[i][g] for g in gpus), gpus))
        return out

    def node_eval(self, i, req, scarce=()):
        return min(self.node_options(i, req, scarce), key=lambda o: o[:2])

    def _tiebreak(self, i, req):
        c = self.c
        if self.tie == "name":
            return c.tie_rank[i]
        return (
            0.5 * (c.cpu_free[i] - req.cpu_milli) / MAX_SPEC_CPU + 0.5 * sum(c.left[i]) / MAX_SPEC_GPU,
            c.tie_rank[i],
        )

    def _tie(self, best_i, best_t, i, req):
        """The better of the best node so far (``best_t``: its tie key, None until needed) and node ``i``,
        which scores the same: (node, its tie key)."""
        if best_t is None:
            best_t = self._tiebreak(best_i, req)
        t = self._tiebreak(i, req)
        return (i, t) if t < best_t else (best_i, best_t)

    def place(self, req):
        self._sync()
        if req.is_share and self.eps and not self.c.vgpu:
            return self._place_share_ss(req)
        c = self.c
        cpu, mem = req.cpu_milli, req.memory_mib
        cpu_free, mem_free, key = c.cpu_free, c.mem_free, c.key
        scarce = self._scarce()
        memfree = self.fm.mem
        mk = (cpu, mem if memfree else 0, req.num_gpu, req.gpu_milli, req.series, req.framebuffer, req.profile, scarce)
        memo = self.memo.get(mk)
        if memo is None:
            if len(self.memo) > 5000:
                self.memo.clear()
            memo = self.memo[mk] = {}
        best_i, best_s, best_t = -1, None, None
        for i in c.candidates(req.models):
            if cpu_free[i] < cpu or mem_free[i] < mem:
                continue
            k = (key[i], mem_free[i]) if memfree else key[i]
            s = memo.get(k)
            if s is None:
                s = self.node_eval(i, req, scarce)[:2] if c.node_fits(i, req) else False
                memo[k] = s
            if s is False:
                continue
            if best_s is None or s < best_s:
                best_i, best_s, best_t = i, s, None
            elif s == best_s:
                best_i, best_t = self._tie(best_i, best_t, i, req)
        if best_i < 0:
            return None
        return c.make_decision(best_i, self.node_eval(best_i, req, scarce)[2], req)

    def _place_share_ss(self, req):
        c = self.c
        cpu, mem, s = req.cpu_milli, req.memory_mib, req.gpu_milli
        cpu_free, mem_free, key, left = c.cpu_free, c.mem_free, c.key, c.left
        scarce = self._scarce()
        memfree = self.fm.mem
        mk = (cpu, mem if memfree else 0, s, scarce)
        memo = self.optmemo.get(mk)
        if memo is None:
            if len(self.optmemo) > 5000:
                self.optmemo.clear()
            memo = self.optmemo[mk] = {}
        # sum-of-squares delta per gap size h (the same for every node)
        gaps, th, eps = self.gaps, self.theta, self.eps
        ssd = {}
        best_i, best_h, best_s, best_t = -1, 0, None, None
        for i in c.candidates(req.models):
            if cpu_free[i] < cpu or mem_free[i] < mem:
                continue
            k = (key[i], mem_free[i]) if memfree else key[i]
            opts = memo.get(k)
            if opts is None:
                if c.node_fits(i, req):
                    opts = tuple((fd, room) for fd, room, _g in self.node_options(i, req, scarce))
                else:
                    opts = ()
                memo[k] = opts
            for fd, h in opts:  # for a share, room == the chosen GPU's gap h
                d = ssd.get(h)
                if d is None:
                    r = h - s
                    d = (2 * gaps[r] + 1 if r >= th else 0) - (2 * gaps[h] - 1 if th <= h < MILLI else 0)
                    ssd[h] = d
                sc = (eps * d + fd, h)
                if best_s is None or sc < best_s:
                    best_i, best_h, best_s, best_t = i, h, sc, None
                elif sc == best_s and i != best_i:
                    best_i, best_t = self._tie(best_i, best_t, i, req)
        if best_i < 0:
            return None
        g = min(g for g in range(c.ngpu[best_i]) if left[best_i][g] == best_h)
        return c.make_decision(best_i, (g,), req)


POLICIES["ours"] = OursPolicy


def policy_typical(name: str, demand: Iterable[Request]) -> list[TypicalPod]:
    """The typical-task distribution each policy uses, built from the trace's own requests:
    FGD the simulator's (95% coverage); ours also keeps every multi-GPU spec."""
    demand = list(demand)
    if name.startswith("ours"):
        return typical_pods(demand, include_multi=True)
    return typical_pods(demand)
