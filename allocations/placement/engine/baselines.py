"""The baseline policies the default is measured against: first-fit, random, best-fit and FGD
(Fragmentation Gradient Descent, ATC'23), each as the FGD simulator scores it."""

from __future__ import annotations

import math
import random

from allocations.placement.engine.policy import (
    MAX_SPEC_CPU,
    MAX_SPEC_GPU,
    Policy,
    free_milli_per_gpu,
    gpu_options,
    gpus_key_after,
)
from allocations.placement.engine.state import SHARE_EMPTY, WHOLE_FREE, Request
from allocations.placement.engine.typical import TypicalPod


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
    random GPU that fits (simulator's random GPU selection); whole GPUs as ``bestfit_gpus``."""

    name = "random"

    def __init__(self, cluster, seed=0, typical=None):
        super().__init__(cluster, seed, typical)
        self.rng = random.Random(seed)

    def place(self, req):
        c = self.c
        feasible = [i for i in c.candidates(req.models) if c.node_fits(i, req)]
        if not feasible:
            return None
        i = feasible[self.rng.randrange(len(feasible))]
        if req.is_share:
            size = c.share_profile(i, req) if c.vgpu else 0
            fitting = [g for g in range(c.ngpu[i]) if c.gpu_can_host(i, g, req, size)]
            return c.make_decision(i, (fitting[self.rng.randrange(len(fitting))],), req)
        return c.make_decision(i, self.bestfit_gpus(i, req), req)


class BestFitPolicy(Policy):
    """Simulator's BestFit: node score 0.5*cpu_left/128 cores + 0.5*gpu_left/8 GPUs after placing
    (lower better), scaled to the integer score int((1-x)*100) as the simulator does; ties to the
    lexicographically smallest host name; best-fit GPU inside the node."""

    name = "best-fit"

    def place(self, req):
        c = self.c
        cpu, mem = req.cpu_milli, req.memory_mib
        cpu_free, mem_free, left = c.cpu_free, c.mem_free, c.left
        best_i, best_score, best_rank = -1, None, None
        rank = c.name_rank
        for i in c.candidates(req.models):
            if cpu_free[i] < cpu or mem_free[i] < mem or not c.node_fits(i, req):
                continue
            if req.num_gpu <= 0:
                gpu_request = 0
            elif req.is_share and c.vgpu:
                gpu_request = c.lad[i].unit_milli(c.share_profile(i, req))
            else:
                gpu_request = req.gpu_request_milli
            leftover = 0.5 * (cpu_free[i] - cpu) / MAX_SPEC_CPU + 0.5 * (sum(left[i]) - gpu_request) / MAX_SPEC_GPU
            score = int((1.0 - leftover) * 100)
            if best_score is None or score > best_score or (score == best_score and rank[i] < best_rank):
                best_i, best_score, best_rank = i, score, rank[i]
        if best_i < 0:
            return None
        return c.make_decision(best_i, self.bestfit_gpus(best_i, req), req)


# ---- FGD ------------------------------------------------------------------------------------


def _sigmoid(x: float) -> float:
    if x < -700:
        return 0.0
    return 1.0 / (1.0 + math.exp(-x))


class FragModel:
    """Node GPU fragmentation against a typical-task distribution (FGD, ATC'23).

    For a node state, the fragment amount is sum_t p_t * frag_t where, for each typical task t:
      * CPU-only task or task that cannot use this GPU model: all free GPU capacity;
      * task fits (enough suitable GPUs and the node's free CPU): free capacity of the GPUs that
        cannot take the task (fractional: left < milli; vgpu: runs another profile / no slot);
      * otherwise: all free GPU capacity.
    Free capacity is in milli-GPU (vgpu: free instances x profile share of the board)."""

    def __init__(self, typical: list[TypicalPod], vgpu: bool, ladder):
        self.typical = typical
        self.vgpu = vgpu
        self.ladder = ladder
        self._per_model: dict = {}
        self.memo: dict = {}

    def tasks_for(self, model: str) -> tuple[float, tuple, object]:
        """(weight of the tasks that count all free capacity, the other tasks as tuples, the ladder)."""
        per_model = self._per_model.get(model)
        if per_model is None:
            all_free_weight = 0.0
            tasks = []
            ladder = self.ladder(model)
            for task in self.typical:
                whole = task.whole
                profile_key = (
                    0
                    if whole or not self.vgpu
                    else ladder.choose(task.gpu_milli, task.series, task.framebuffer, task.profile)
                )
                if task.num_gpu == 0 or task.gpu_milli == 0:
                    all_free_weight += task.freq
                elif (task.models is not None and model not in task.models) or profile_key is None:
                    all_free_weight += task.freq
                else:
                    tasks.append((task.freq, task.cpu_milli, task.num_gpu, task.gpu_milli, whole, profile_key))
            per_model = (all_free_weight, tuple(tasks), ladder)
            self._per_model[model] = per_model
        return per_model

    def frag(self, model: str, cpu_free: int, gpus_key: tuple) -> float:
        """gpus_key: fractional: sorted tuple of milli left; vgpu: sorted tuple of (profile, used)."""
        key = (model, cpu_free, gpus_key)
        cached = self.memo.get(key)
        if cached is not None:
            return cached
        all_free_weight, tasks, ladder = self.tasks_for(model)
        vgpu = self.vgpu
        if vgpu:
            free = free_milli_per_gpu(ladder, gpus_key)
        else:
            free = gpus_key
        total = sum(free)
        fragment = all_free_weight * total
        if total > 0:
            for freq, task_cpu, task_gpus, task_milli, whole, profile_key in tasks:
                if cpu_free < task_cpu:
                    fragment += freq * total
                    continue
                fitting = 0  # GPUs that can take the task
                stranded = 0  # free capacity of the others
                if vgpu:
                    for (slot, _used), gpu_free in zip(gpus_key, free, strict=False):
                        if (
                            (slot in WHOLE_FREE)
                            if whole
                            else (slot in SHARE_EMPTY or (slot == profile_key and gpu_free > 0))
                        ):
                            fitting += 1
                        else:
                            stranded += gpu_free
                else:
                    for gpu_free in free:
                        if gpu_free >= task_milli:
                            fitting += 1
                        else:
                            stranded += gpu_free
                fragment += freq * (stranded if fitting >= task_gpus else total)
        if len(self.memo) > 2_000_000:
            self.memo.clear()
        self.memo[key] = fragment
        return fragment


class FGDPolicy(Policy):
    """Fragmentation Gradient Descent: place where the node's expected fragmentation (against the
    typical tasks) grows least.  Score = int(sigmoid((F_before - F_after)/1000) * 100) like the
    simulator; node ties broken by a per-seed random node order; inside the node the GPU with the
    best score (lowest index on ties)."""

    name = "fgd"

    def __init__(self, cluster, seed=0, typical=None):
        super().__init__(cluster, seed, typical)
        self.fm = FragModel(self.typical, cluster.vgpu, cluster.ladder)
        rng = random.Random(seed)
        order = list(range(cluster.n))
        rng.shuffle(order)
        self.rank = [0] * cluster.n
        for rank, i in enumerate(order):
            self.rank[i] = rank
        self.memo: dict = {}

    def node_eval(self, i: int, req: Request):
        """(score, gpus) of the best GPU choice on node i (node assumed feasible)."""
        c = self.c
        frag_before = self.fm.frag(c.gmodel[i], c.cpu_free[i], c.key[i][2])
        cpu_after = c.cpu_free[i] - req.cpu_milli
        best = None
        for gpus, size in gpu_options(c, i, req):
            frag_after = self.fm.frag(c.gmodel[i], cpu_after, gpus_key_after(c, i, req, gpus, size))
            score = int(_sigmoid((frag_before - frag_after) / 1000.0) * 100)
            if best is None or score > best[0]:
                best = (score, gpus)
        return best

    def place(self, req):
        c = self.c
        cpu, mem = req.cpu_milli, req.memory_mib
        cpu_free, mem_free, node_key = c.cpu_free, c.mem_free, c.key
        rank = self.rank
        shape = (cpu, req.num_gpu, req.gpu_milli, req.series, req.framebuffer, req.profile)
        score_of_state = self.memo.get(shape)  # this request shape's score per node state (False: does not fit)
        if score_of_state is None:
            score_of_state = self.memo[shape] = {}
        best_i, best_score, best_rank = -1, None, None
        for i in c.candidates(req.models):
            if cpu_free[i] < cpu or mem_free[i] < mem:
                continue
            state = node_key[i]
            score = score_of_state.get(state)
            if score is None:
                if c.node_fits(i, req):
                    score = self.node_eval(i, req)[0]
                else:
                    score = False
                score_of_state[state] = score
            if score is False:
                continue
            if best_score is None or score > best_score or (score == best_score and rank[i] < best_rank):
                best_i, best_score, best_rank = i, score, rank[i]
        if best_i < 0:
            return None
        gpus = self.node_eval(best_i, req)[1]
        # lowest index GPU among equally scored states: node_eval lists lowest index per state
        return c.make_decision(best_i, gpus, req)
