"""The default policy, "ours": least growth of a node's expected stranded capacity ("slot
fragmentation"), and for fractional shares the sum-of-squares balance of the cluster's gaps."""

from __future__ import annotations

from allocations.placement.engine.hostindex import HostIndex
from allocations.placement.engine.ladders import MILLI
from allocations.placement.engine.policy import (
    MAX_SPEC_CPU,
    MAX_SPEC_GPU,
    Policy,
    free_milli_per_gpu,
    gpu_options,
    gpus_key_after,
)
from allocations.placement.engine.state import SHARE_EMPTY, WHOLE_FREE

STARVATION_WEIGHT = 4.0  # weight of the free GPU capacity the node's CPU cannot feed
CORES_PER_GPU = 8.0  # the CPU a GPU needs to be fed, for the starvation term
MULTI_GPU_WEIGHT = 4.0  # multi-GPU tasks count this much more, so whole nodes stay free for them
GAP_WEIGHT = 1000.0  # fractional shares: weight of the sum-of-squares change of the gap histogram
DEAD_GAP_MILLI = 80  # gaps smaller than this are dead: not counted in the histogram


class SlotFragModel:
    """Expected stranded GPU capacity of one node ("slot fragmentation"), lower is better.

    For every typical task t (frequency p_t): fill the node with copies of t as far as GPU slots,
    free CPU and free memory allow; what is left of the node's free GPU capacity is t's fragment:
        frag_t = free - min(free, unit_t * min(gpu_slots_t, cpu_free // cpu_t, mem_free // mem_t))
    (fractional: gpu_slots = sum over GPUs of left // milli, or free GPUs // n for whole-GPU tasks;
    vgpu: free instances of t's profile on GPUs running it, plus whole empty GPUs; unit_t = the
    capacity t commits: its profile's share of the board).  The node's fragment is
    sum_t w_t * frag_t, with w_t = p_t, multiplied by ``MULTI_GPU_WEIGHT`` for multi-GPU tasks, plus
    ``STARVATION_WEIGHT`` * max(0, free - cpu_free / ``CORES_PER_GPU``): free GPU capacity the
    node's CPU cannot feed (the CPU-starvation term).  Tasks that may not use this model count
    all free capacity as fragment."""

    def __init__(self, typical, vgpu: bool, ladder):
        self.vgpu = vgpu
        self.ladder = ladder
        self.cpu_per_gpu_milli = CORES_PER_GPU * MILLI
        gpu_tasks = [task for task in typical if task.num_gpu > 0 and task.gpu_milli > 0]
        total_freq = sum(task.freq for task in gpu_tasks) or 1.0
        self.tasks = [
            (task, task.freq / total_freq * (MULTI_GPU_WEIGHT if task.num_gpu > 1 else 1.0)) for task in gpu_tasks
        ]
        self._per_model: dict = {}
        self.memo: dict = {}
        self.slot_memo: dict = {}  # (model, GPU state) -> ``gpu_slots``

    def tasks_for(self, model: str) -> tuple[tuple, object]:
        """The typical tasks as seen on a board of ``model`` (tuples, as ``frag`` reads them), and its ladder."""
        per_model = self._per_model.get(model)
        if per_model is None:
            ladder = self.ladder(model)
            tasks = []
            for task, weight in self.tasks:
                whole = task.whole
                profile_key = (
                    0
                    if whole or not self.vgpu
                    else ladder.choose(task.gpu_milli, task.series, task.framebuffer, task.profile)
                )
                if (task.models is not None and model not in task.models) or profile_key is None:
                    tasks.append((weight, None, 0, 0, True, 0, 0, 0, 1, 0))
                    continue
                # usable capacity of k copies = k * unit_num // unit_den (vgpu: floored once, like free capacity)
                if whole:
                    unit_num, unit_den = task.num_gpu * MILLI, 1
                elif self.vgpu:
                    unit_num, unit_den = ladder.size[profile_key] * MILLI, ladder.fb
                else:
                    unit_num, unit_den = task.gpu_milli, 1
                tasks.append(
                    (
                        weight,
                        task.cpu_milli,
                        task.num_gpu,
                        task.gpu_milli,
                        whole,
                        profile_key,
                        task.memory_mib,
                        unit_num,
                        unit_den,
                        ladder.maxi[profile_key] if profile_key else 0,
                    )
                )
            per_model = (tuple(tasks), ladder)
            self._per_model[model] = per_model
        return per_model

    def gpu_slots(self, model: str, gpus_key: tuple) -> tuple:
        """What ``frag`` needs of a GPU state, whatever the node's free CPU and memory: (free capacity,
        per typical task (weight, cpu, memory, copies the GPUs alone allow, unit_num, unit_den), cpu None
        for tasks that may not use this model).  Memoised: many CPU/memory states share a GPU state."""
        key = (model, gpus_key)
        cached = self.slot_memo.get(key)
        if cached is not None:
            return cached
        tasks, ladder = self.tasks_for(model)
        vgpu = self.vgpu
        if vgpu:
            free = free_milli_per_gpu(ladder, gpus_key)
            whole_free = sum(1 for slot, _used in gpus_key if slot in WHOLE_FREE)
        else:
            free = gpus_key
            whole_free = sum(1 for gpu_free in gpus_key if gpu_free == MILLI)
        rows = []
        for (
            weight,
            task_cpu,
            task_gpus,
            task_milli,
            whole,
            profile_key,
            task_memory,
            unit_num,
            unit_den,
            instances_per_gpu,
        ) in tasks:
            if task_cpu is None:  # may not use this model
                rows.append((weight, None, 0, 0, 0, 1))
                continue
            if whole:
                copies = whole_free // task_gpus
            elif vgpu:
                copies = 0
                for slot, used in gpus_key:
                    if slot in SHARE_EMPTY:
                        copies += instances_per_gpu
                    elif slot == profile_key:
                        copies += instances_per_gpu - used
            else:
                copies = 0
                for gpu_free in free:
                    copies += gpu_free // task_milli
            rows.append((weight, task_cpu, task_memory, copies, unit_num, unit_den))
        if len(self.slot_memo) > 200_000:
            self.slot_memo.clear()
        cached = self.slot_memo[key] = (sum(free), tuple(rows))
        return cached

    def frag(self, model: str, cpu_free: int, mem_free: int, gpus_key: tuple) -> float:
        """gpus_key: fractional: sorted tuple of milli left; vgpu: sorted tuple of (profile, used)."""
        key = (model, cpu_free, mem_free, gpus_key)
        cached = self.memo.get(key)
        if cached is not None:
            return cached
        total, rows = self.gpu_slots(model, gpus_key)
        fragment = 0.0
        if total > 0:
            for weight, task_cpu, task_memory, copies, unit_num, unit_den in rows:
                if task_cpu is None:  # may not use this model
                    fragment += weight * total
                    continue
                if copies and task_cpu > 0:
                    by_cpu = cpu_free // task_cpu
                    if by_cpu < copies:
                        copies = by_cpu
                if copies and task_memory > 0:
                    by_memory = mem_free // task_memory
                    if by_memory < copies:
                        copies = by_memory
                usable = copies * unit_num // unit_den
                if usable < total:
                    fragment += weight * (total - usable)
            starving = total - cpu_free * MILLI / self.cpu_per_gpu_milli
            if starving > 0:
                fragment += STARVATION_WEIGHT * starving
        if len(self.memo) > 1_000_000:
            self.memo.clear()
        self.memo[key] = fragment
        return fragment


class OursPolicy(Policy):
    """Default policy.

    Score of placing a request on node i with GPU choice g (lower is better):

      1. fractional share requests only: the sum-of-squares change of the cluster's gap
         histogram, GAP_WEIGHT * (2 N[h-s] + 1 - 2 N[h] + 1), where N[x] counts GPUs with x milli
         free (0 < x < 1000) and gaps below ``DEAD_GAP_MILLI`` are dead (not counted).  It keeps the
         supply of every gap size in line with the requests that can fill it (Csirik et al.'s
         Sum-of-Squares online bin packing), instead of piling up gaps nothing will fill;
      2. the change of the node's expected stranded capacity (``SlotFragModel``: per typical task
         the capacity it could not use if it filled the node, limited by GPU slots, CPU and
         memory; plus a CPU-starvation term; multi-GPU tasks weighted up so whole nodes stay free
         for them);
      3. ties: the GPU with least room (best fit), then the node with least leftover
         (0.5 CPU/128 cores + 0.5 GPU/8 GPUs), then host name (or the cluster's ``spread_ties``
         order).  Deterministic.

    vgpu: the slot model counts free instances per profile type, so a share request fills a GPU
    that already runs its profile before it opens an empty GPU, and goes to the board whose
    ladder commits least; whole GPUs stay free for whole/multi-GPU requests."""

    name = "ours"

    def __init__(self, cluster, seed=0, typical=None):
        super().__init__(cluster, seed, typical)
        self.fm = SlotFragModel(self.typical, cluster.vgpu, cluster.ladder)
        self.memo: dict = {}  # request shape -> node state -> (frag delta, room), False when it does not fit
        self.share_memo: dict = {}  # fractional shares: request shape -> node state -> ((frag delta, gap), ...)
        self.index = HostIndex(cluster)  # request shape -> its candidate hosts ordered by score
        self._last_keys = [None] * cluster.n
        self._gaps_pos = -1  # change-log position the gap counts are up to date with
        self.gaps = [0] * (MILLI + 1)  # fractional: number of GPUs with x milli free

    # -- incremental cluster-wide state ------------------------------------------------------
    def _sync(self):
        """Bring the gap counts up to date with the nodes whose state changed (fractional only)."""
        c = self.c
        if c.vgpu:
            return
        changed, self._gaps_pos = c.changes_since(self._gaps_pos)
        last, keys = self._last_keys, c.key
        gaps = self.gaps
        for i in range(c.n) if changed is None else changed:
            key = keys[i]
            if last[i] is key:
                continue
            if last[i] is not None:
                for gpu_free in last[i][2]:
                    gaps[gpu_free] -= 1
            for gpu_free in key[2]:
                gaps[gpu_free] += 1
            last[i] = key

    # -- scoring ---------------------------------------------------------------------------
    def node_options(self, i, req):
        """[(delta_frag, room, gpus)] for each distinct GPU choice on node i."""
        c = self.c
        fm = self.fm
        model = c.gmodel[i]
        frag_before = fm.frag(model, c.cpu_free[i], c.mem_free[i], c.key[i][2])
        cpu_after = c.cpu_free[i] - req.cpu_milli
        mem_after = c.mem_free[i] - req.memory_mib
        options = []
        for gpus, size in gpu_options(c, i, req):
            frag_after = fm.frag(model, cpu_after, mem_after, gpus_key_after(c, i, req, gpus, size))
            options.append((round(frag_after - frag_before, 6), sum(c.left[i][g] for g in gpus), gpus))
        return options

    def node_eval(self, i, req):
        return min(self.node_options(i, req), key=lambda option: option[:2])

    def _tiebreak(self, i, req):
        c = self.c
        return (
            0.5 * (c.cpu_free[i] - req.cpu_milli) / MAX_SPEC_CPU + 0.5 * sum(c.left[i]) / MAX_SPEC_GPU,
            c.tie_rank[i],
        )

    # -- placing -----------------------------------------------------------------------------
    # Every host's place in the order (score, then ``_tiebreak``) depends on its own state only, so each
    # request shape keeps its hosts in a heap (``hostindex``) and rescores only the hosts that changed.
    def place(self, req):
        self._sync()
        if req.is_share and not self.c.vgpu:
            return self._place_share_ss(req)
        c = self.c
        cpu, mem = req.cpu_milli, req.memory_mib
        shape = (cpu, mem, req.num_gpu, req.gpu_milli, req.series, req.framebuffer, req.profile)
        index = self.index.get((shape, req.models))
        stale, rebuild = self.index.stale(index, req.models)
        if stale:
            cpu_free, mem_free, node_key = c.cpu_free, c.mem_free, c.key
            score_of_state = self.memo.get(shape)
            if score_of_state is None:
                if len(self.memo) > 5000:
                    self.memo.clear()
                score_of_state = self.memo[shape] = {}
            entries = {}
            for i in stale:
                if cpu_free[i] < cpu or mem_free[i] < mem:
                    entries[i] = None
                    continue
                state = (node_key[i], mem_free[i])
                score = score_of_state.get(state)
                if score is None:
                    score = self.node_eval(i, req)[:2] if c.node_fits(i, req) else False
                    score_of_state[state] = score
                entries[i] = None if score is False else (*score, *self._tiebreak(i, req), i)
            heap = index.heap
            if rebuild:
                heap.reset({i: entry for i, entry in entries.items() if entry is not None})
            else:
                for i, entry in entries.items():
                    heap.set(i, entry)
        best = index.heap.top()
        if best is None:
            return None
        best_i = best[-1]
        return c.make_decision(best_i, self.node_eval(best_i, req)[2], req)

    def _place_share_ss(self, req):
        c = self.c
        cpu, mem, share = req.cpu_milli, req.memory_mib, req.gpu_milli
        left = c.left
        shape = (cpu, mem, share)
        index = self.index.get(("share", shape, req.models))
        stale, rebuild = self.index.stale(index, req.models)
        if stale:
            cpu_free, mem_free, node_key = c.cpu_free, c.mem_free, c.key
            options_of_state = self.share_memo.get(shape)
            if options_of_state is None:
                if len(self.share_memo) > 5000:
                    self.share_memo.clear()
                options_of_state = self.share_memo[shape] = {}
            entries_of = {}
            for i in stale:
                if cpu_free[i] < cpu or mem_free[i] < mem:
                    entries_of[i] = {}
                    continue
                state = (node_key[i], mem_free[i])
                options = options_of_state.get(state)
                if options is None:
                    if c.node_fits(i, req):
                        options = tuple((frag_delta, room) for frag_delta, room, _gpus in self.node_options(i, req))
                    else:
                        options = ()
                    options_of_state[state] = options
                # for a share, room == the chosen GPU's gap; a node has at most one option per gap
                tie = self._tiebreak(i, req) if options else None
                entries_of[i] = {gap: (frag_delta, *tie, i) for frag_delta, gap in options}
            if rebuild:
                index.reset_gaps(entries_of)
            else:
                for i, entries in entries_of.items():
                    index.set_gaps(i, entries)
        # score = (GAP_WEIGHT * delta(gap) + frag delta, gap): delta is the same for every host of a gap,
        # so the best of a gap is its heap's top (frag delta, then the tie key)
        gaps, dead_below, gap_weight = self.gaps, DEAD_GAP_MILLI, GAP_WEIGHT
        best = None
        for gap, heap in index.by_gap.items():
            top = heap.top()
            rest = gap - share
            delta = (2 * gaps[rest] + 1 if rest >= dead_below else 0) - (
                2 * gaps[gap] - 1 if dead_below <= gap < MILLI else 0
            )
            candidate = (gap_weight * delta + top[0], gap, *top[1:])
            if best is None or candidate < best:
                best = candidate
        if best is None:
            return None
        best_i, best_gap = best[-1], best[1]
        g = min(g for g in range(c.ngpu[best_i]) if left[best_i][g] == best_gap)
        return c.make_decision(best_i, (g,), req)
