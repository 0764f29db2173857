"""The cluster a policy places on: hosts, their GPUs, and the request and decision types.

``Cluster`` keeps the state as arrays (one entry per node, one per GPU of it) with incremental
bookkeeping, enforces every placement rule (``check``), and commits or undoes a decision
(``apply``/``release``). It never chooses: that is the policies' job.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from allocations.placement.engine.ladders import MILLI, Ladder, ladder_for

# GPU slot codes in the vgpu model (a positive code is the key of the profile the GPU runs).
EMPTY = 0  # empty, may start any profile or be taken whole (the trace's vgpu model; "flexible" GPUs)
EMPTY_VGPU = -1  # empty, vGPU only (a GPU in vGPU mode)
FREE_WHOLE = -2  # free, whole only (a GPU in passthrough mode)
WHOLE = -3  # taken whole by one request
SHARE_EMPTY = (EMPTY, EMPTY_VGPU)  # may start a profile
WHOLE_FREE = (EMPTY, FREE_WHOLE)  # may be taken whole
HOME = {"any": EMPTY, "vgpu": EMPTY_VGPU, "whole": FREE_WHOLE}


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
        self.names = [node.name for node in nodes]
        self.gmodel = [node.gpu_model for node in nodes]
        self.cpu_cap = [node.cpu_milli for node in nodes]
        self.mem_cap = [node.memory_mib for node in nodes]
        self.cpu_free = [node.cpu_free for node in nodes]
        self.mem_free = [node.memory_free for node in nodes]
        self.ngpu = [len(node.gpus) for node in nodes]
        self.total_gpus = sum(self.ngpu)
        self.lad = [self.ladder(m) for m in self.gmodel]
        self.fb = [ladder.fb for ladder in self.lad]
        # fractional: left[i][g] milli left.  vgpu: prof[i][g] a slot code (profile key > 0, or
        # EMPTY / EMPTY_VGPU / FREE_WHOLE / WHOLE), used[i][g] instances (1 when taken whole),
        # home[i][g] the code it returns to when emptied; left[i][g] its free capacity in milli.
        self.left = [[MILLI - gpu.used_milli for gpu in node.gpus] for node in nodes]
        self.home = [[HOME[gpu.mode] for gpu in node.gpus] for node in nodes]
        self.prof = [
            [WHOLE if gpu.passthrough else (gpu.profile or HOME[gpu.mode]) for gpu in node.gpus] for node in nodes
        ]
        self.used = [[1 if gpu.passthrough else gpu.instances for gpu in node.gpus] for node in nodes]
        if self.vgpu:
            for i in range(n):
                for g in range(self.ngpu[i]):
                    self.left[i][g] = self._vgpu_left(i, g)
        elif any(gpu.mode != "any" for node in nodes for gpu in node.gpus):
            raise ValueError("GPU modes are a vgpu-model notion")
        self.nfree = [0] * n  # GPUs that may be taken whole now
        self.nempty = [0] * n  # GPUs that may start a profile now (vgpu)
        self.maxleft = [0] * n
        self.key = [None] * n
        self.version = 0
        self.log: list[int] = []  # nodes whose state changed, in order (``changes_since``)
        self.log_base = 0  # log position of log[0]
        for i in range(n):
            self._refresh(i)
        self.log.clear()
        self.by_model: dict[str, list[int]] = {}
        for i, m in enumerate(self.gmodel):
            self.by_model.setdefault(m, []).append(i)
        self._cand_cache: dict = {}
        self.name_rank = [0] * n
        for rank, i in enumerate(sorted(range(n), key=lambda k: self.names[k])):
            self.name_rank[i] = rank
        # The last tie-break of "ours": host name by default; the portal gives each process its own
        # random order (``spread_ties``), so web workers deciding at once rarely pick the same slot.
        self.tie_rank = self.name_rank

    def spread_ties(self, seed: int) -> None:
        order = list(range(self.n))
        random.Random(seed).shuffle(order)
        self.tie_rank = [0] * self.n
        for rank, i in enumerate(order):
            self.tie_rank[i] = rank

    # -- helpers ---------------------------------------------------------------------------
    def ladder(self, model: str) -> Ladder:
        return ladder_for(model, self.ladders)

    def _vgpu_left(self, i: int, g: int) -> int:
        """Free board capacity of GPU g in milli (free instances x profile share)."""
        slot = self.prof[i][g]
        if slot > 0:
            return self.lad[i].free_milli(slot, self.used[i][g])
        return 0 if slot == WHOLE else MILLI

    def _refresh(self, i: int) -> None:
        left = self.left[i]
        self.nfree[i] = sum(1 for g in range(self.ngpu[i]) if self._is_free(i, g))
        self.maxleft[i] = max(left) if left else 0
        if self.vgpu:
            self.nempty[i] = sum(1 for slot in self.prof[i] if slot in SHARE_EMPTY)
            gpus_key = tuple(sorted(zip(self.prof[i], self.used[i], strict=False)))
        else:
            gpus_key = tuple(sorted(left))
        self.key[i] = (self.gmodel[i], self.cpu_free[i], gpus_key)
        log = self.log
        log.append(i)
        if len(log) > 8 * self.n + 4096:  # keep the recent half; older positions read as "everything"
            drop = len(log) // 2
            del log[:drop]
            self.log_base += drop

    def changes_since(self, pos: int) -> tuple[list[int] | None, int]:
        """(the nodes whose state changed since change-log position ``pos``, possibly repeated; None when
        the log no longer reaches back that far or ``pos`` is -1, the current position).  Every change of
        a node's state goes through ``_refresh``, which logs it: caches kept per node recompute those only."""
        end = self.log_base + len(self.log)
        if pos < self.log_base:
            return None, end
        return self.log[pos - self.log_base :], end

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
        for g, gpu in enumerate(gpus):
            if self.vgpu:
                self.prof[i][g] = WHOLE if gpu.passthrough else (gpu.profile or self.home[i][g])
                self.used[i][g] = 1 if gpu.passthrough else gpu.instances
                self.left[i][g] = self._vgpu_left(i, g)
            else:
                self.left[i][g] = MILLI - gpu.used_milli
        self._refresh(i)
        self.version += 1

    def candidates(self, models: frozenset | None) -> list[int]:
        """Node indexes whose GPU model is allowed (all nodes for None)."""
        if models is None:
            return self._all
        nodes = self._cand_cache.get(models)
        if nodes is None:
            nodes = sorted(i for m in models for i in self.by_model.get(m, ()))
            self._cand_cache[models] = nodes
        return nodes

    @property
    def _all(self) -> list[int]:
        nodes = self._cand_cache.get(None)
        if nodes is None:
            nodes = list(range(self.n))
            self._cand_cache[None] = nodes
        return nodes

    def node_state(self, i: int) -> NodeState:
        gpus = []
        modes = {code: mode for mode, code in HOME.items()}
        for g in range(self.ngpu[i]):
            if self.vgpu:
                slot = self.prof[i][g]
                gpus.append(
                    GPUState(
                        used_milli=MILLI - self.left[i][g],
                        profile=slot if slot > 0 else 0,
                        instances=self.used[i][g] if slot > 0 else 0,
                        passthrough=slot == WHOLE,
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
        slot = self.prof[i][g]
        if slot in SHARE_EMPTY:
            return True
        return slot == size and self.used[i][g] < self.lad[i].maxi[slot]

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
        total = 0.0
        for i in range(self.n):
            framebuffer, size = self.fb[i], self.lad[i].size
            for slot, instances in zip(self.prof[i], self.used[i], strict=False):
                if slot > 0:
                    total += instances * size[slot] * MILLI / framebuffer
                elif slot == WHOLE:
                    total += MILLI
        return total

    def make_decision(self, i: int, gpus: Sequence[int], req: Request) -> Decision:
        if req.num_gpu <= 0:
            return Decision(i, self.names[i], (), 0)
        if req.is_share:
            if self.vgpu:
                key = self.share_profile(i, req)
                return Decision(i, self.names[i], tuple(gpus), req.gpu_milli, self.lad[i].name[key], key)
            return Decision(i, self.names[i], tuple(gpus), req.gpu_milli)
        return Decision(i, self.names[i], tuple(gpus), MILLI)
