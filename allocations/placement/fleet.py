"""Choosing a host and GPU(s) for a desktop: the placement engine on the fleet as the database has it.

``engine`` is the policy code (plain data in, a decision out, no ORM; the same code the trace
replay measures). This module is its adapter for the request service:

- ``shape_of(template)`` (from ``shapes``) turns a desktop template into the engine's ``Request``;
- ``fleet()`` is this process's ``Fleet``: the engine's ``Cluster`` and the deployment's policy
  (``PORTAL_PLACEMENT_POLICY``), refreshed from the database before every decision. Only nodes
  whose rows changed are updated, so the policy's caches (keyed by node state) stay warm;
- ``Fleet.place(request)`` returns a ``Choice`` (host, GPUs, profile) or raises ``NoPlacement``
  naming the short resource.

The request service then claims the choice with conditional updates and asks again on fresh rows
if another request won the race: the database, not this cache, is the truth.

Rules (enforced by the engine, and again atomically by the claim): host online and not in
maintenance; vGPU on a GPU in vGPU or flexible mode of an allowed board that is empty or runs the
same profile with a free instance (equal-size mode); whole GPUs free and in passthrough or
flexible mode, all on one host that can pass PCI devices through; the host's free vCPUs and RAM.
Profile ladders come from the catalog (``VGPUProfile``): a share request gets the smallest profile
of its series that holds the share of the board; MIG-backed profiles are only given to templates
that name them.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from allocations.placement import engine
from allocations.placement.engine import MILLI, Ladder
from allocations.placement.engine.state import EMPTY_VGPU, FREE_WHOLE
from allocations.placement.shapes import catalog_ladders, learned_demand, shape_of

TYPICAL_TTL_S = 600  # how long the learned demand distribution is kept before it is read again
CATALOG_TTL_S = 60
FULL_REFRESH_S = 10  # a full read of the GPU rows at least this often, whatever the change detection says


class NoPlacement(Exception):
    """No host can take the request; ``message`` names the short resource."""

    def __init__(self, message: str, resource: str):
        super().__init__(message)
        self.message = message
        self.resource = resource


@dataclass(frozen=True)
class Choice:
    host_id: int
    gpu_ids: tuple[int, ...]
    profile_id: int | None  # the vGPU profile the desktop gets; None for whole GPUs or no GPU
    whole_framebuffer_mib: int = 0  # the whole GPUs' framebuffer, summed (0 for a vGPU or no GPU)


_MODE = {"vgpu": "vgpu", "passthrough": "whole", "flexible": "any"}
_HOST_COLUMNS = "h.id, h.name, h.state, h.cpu_cores, h.memory_mib, h.vcpus_used, h.memory_used_mib, h.capacity_version"
# A host that cannot pass PCI devices through (Host.passthrough_capable false) has no whole GPUs: its
# passthrough GPUs are left out and its flexible ones read as vGPU-only (the claim refuses them too).
_GPU_MODE = "CASE WHEN h.passthrough_capable OR g.mode <> 'flexible' THEN g.mode ELSE 'vgpu' END"
_GPU_COLUMNS = f"g.id, g.model, {_GPU_MODE}, g.current_profile_id, g.instances_used, g.framebuffer_mib"
_GPU_USABLE = "g.present AND g.mode <> %s AND (h.passthrough_capable OR g.mode <> 'passthrough')"  # %s: DISABLED
NO_PASSTHROUGH_HOST = "No host here can hand a whole GPU to a desktop (no IOMMU/VFIO passthrough)."


class Fleet:
    """The engine's view of the online fleet, for one process. Thread-safe (one decision at a time).

    Hosts with boards of several models become one engine node per model, each offered the host's
    free vCPUs and RAM (a request lands on one of them, and the claim re-checks the host's totals)."""

    def __init__(self, policy: str, *, vcpu_milli: int = 1000, demand=None, seed: int = 0, spread: bool = True):
        if policy not in engine.POLICIES:
            raise ValueError(f"unknown placement policy {policy!r}; choose from {sorted(engine.POLICIES)}")
        self.policy_name = policy
        self.vcpu_milli = vcpu_milli
        self.seed = seed
        self.spread = spread  # break "ours"' last ties in this process's own random order (see Cluster.spread_ties)
        self._fixed_demand = list(demand) if demand is not None else None
        self._lock = threading.Lock()
        self.cluster: engine.Cluster | None = None
        self.policy = None
        self._structure = None
        self._node_of: dict = {}
        self._hosts: list = []
        self._fingerprint = None
        self._full_at = 0.0
        self._states: list = []
        self._node_host: list[int] = []
        self._node_gpus: list[tuple[int, ...]] = []
        self._node_fb: list[tuple[int, ...]] = []  # each node's GPUs' framebuffer (MiB), as _node_gpus
        self._ladders: dict | None = None
        self._ladders_at = 0.0
        self._xmin: int | None = None
        self._catalog_reread = False
        self._hosts_by_id: dict = {}
        self.profiles: dict = {}  # catalog rows by id, as of the last catalog read
        self._typical = None
        self._typical_at = 0.0
        self.rebuilds = 0
        self.blocked_memo: dict | None = None  # a batch of decisions (placement.offers) reads this once

    # -- reading the database ------------------------------------------------------------------
    def _host_rows(self) -> list[tuple]:
        """Online hosts: (id, name, cpu_cores, memory_mib, vcpus_used, memory_used_mib, capacity_version)."""
        from inventory.choices import HostState
        from inventory.models import Host

        with connection.cursor() as cur:
            cur.execute(
                f"SELECT id, name, cpu_cores, memory_mib, vcpus_used, memory_used_mib, capacity_version "
                f"FROM {Host._meta.db_table} WHERE state = %s ORDER BY name",
                [HostState.ONLINE],
            )
            return cur.fetchall()

    def _fingerprint_now(self) -> tuple:
        """Changes whenever a GPU row is added, removed or saved (mode, presence, model, discovery)."""
        from inventory.models import GPU

        with connection.cursor() as cur:
            cur.execute(f"SELECT COUNT(*), MAX(updated_at), MAX(id) FROM {GPU._meta.db_table}")
            return tuple(cur.fetchone())

    def _gpu_rows(self, host_ids=None) -> dict[int, list[tuple]]:
        """host id → its usable GPUs as (id, model, mode, current_profile_id, instances_used, framebuffer_mib),
        by model and PCI."""
        from inventory.choices import GPUMode
        from inventory.models import GPU, Host

        sql = (
            f"SELECT g.host_id, {_GPU_COLUMNS} FROM {GPU._meta.db_table} g "
            f"JOIN {Host._meta.db_table} h ON h.id = g.host_id WHERE {_GPU_USABLE}"
        )
        params: list = [GPUMode.DISABLED]
        if host_ids is not None:
            sql += f" AND g.host_id IN ({', '.join(['%s'] * len(host_ids))})"
            params += list(host_ids)
        out: dict[int, list[tuple]] = {}
        with connection.cursor() as cur:
            cur.execute(sql + " ORDER BY g.host_id, g.model, g.pci_address", params)
            for hid, *row in cur.fetchall():
                out.setdefault(hid, []).append(tuple(row))
        return out

    def _read_catalog(self, now: float) -> None:
        from inventory.models import VGPUProfile

        self.profiles = {p.pk: p for p in VGPUProfile.objects.all()}
        ladders = catalog_ladders(self.profiles.values())
        if self._ladders is not None and _ladder_sig(ladders) != _ladder_sig(self._ladders):
            self._structure = None  # the catalog changed: rebuild
        self._ladders, self._ladders_at = ladders, now

    def _typical_now(self):
        if self._fixed_demand is not None:
            if self._typical is None:
                self._typical = engine.policy_typical(self.policy_name, self._fixed_demand)
            return self._typical
        now = time.monotonic()
        if self._typical is None or now - self._typical_at > TYPICAL_TTL_S:
            typical = engine.policy_typical(self.policy_name, learned_demand(self.vcpu_milli))
            if self._typical is not None and typical != self._typical:
                self._structure = None  # the policy scores against the new distribution: rebuild
            self._typical, self._typical_at = typical, now
        return self._typical

    def refresh(self, full: bool = False) -> None:
        """Bring the engine's cluster up to date with the database.

        GPU rows are read again only for hosts whose ``capacity_version`` or counters moved: claims and
        releases move it in the same UPDATE as the counters, saves of a host or its GPU rows move it
        too. On PostgreSQL the version is the writing transaction's id, so one query returns just the
        hosts changed by transactions this fleet has not seen (those at or after the oldest transaction
        in progress at its last read); elsewhere the online hosts' rows and a GPU-table fingerprint are
        read each time. Every write the portal makes moves what these reads look at, so the view is
        current for them; writes made behind the portal's back (SQL by hand) are picked up by the full
        read (``full``) that happens every ``FULL_REFRESH_S``, when hosts come or go, when the catalog or
        the learned demand changed, and when the caller asks (the request service does from a request's
        third claim attempt on: a stale view costs a retry, never a wrong claim)."""
        now = time.monotonic()
        if full or self._ladders is None or now - self._ladders_at > CATALOG_TTL_S:
            self._read_catalog(now)
        typical = self._typical_now()
        full = (
            full
            or self.cluster is None
            or self._structure is None  # the catalog or the learned demand changed
            or now - self._full_at > FULL_REFRESH_S
        )
        if connection.vendor == "postgresql":
            self._refresh_pg(full, now, typical)
        else:
            self._refresh_scan(full, now, typical)

    def _refresh_scan(self, full: bool, now: float, typical) -> None:
        hosts = self._host_rows()
        fingerprint = self._fingerprint_now()
        full = full or fingerprint != self._fingerprint or [h[:4] for h in hosts] != [h[:4] for h in self._hosts]
        if full:
            gpus = self._gpu_rows()
            self._fingerprint, self._full_at = fingerprint, now
            changed = None
        else:
            changed = [h for h, old in zip(hosts, self._hosts, strict=True) if h != old]
            if not changed:
                return
            gpus = self._gpu_rows([h[0] for h in changed])
        self._hosts = hosts
        self._apply(changed or hosts, gpus, changed is not None, self._ladders, typical)

    def _refresh_pg(self, full: bool, now: float, typical) -> None:
        from inventory.choices import HostState

        if not full and self._xmin is not None:
            xmin, rows, gpus = self._pg_changed(self._xmin)
            changed = []
            for hid, name, state, *rest in rows:
                old = self._hosts_by_id.get(hid)
                host = (hid, name, *rest)
                if (state == HostState.ONLINE) != (old is not None) or (old and host[:4] != old[:4]):
                    full = True  # a host came, went, or changed size: rebuild
                    break
                if old and host != old:
                    changed.append(host)
            if not full:
                if changed:
                    self._hosts_by_id.update((h[0], h) for h in changed)
                    self._apply(changed, gpus, True, self._ladders, typical)
                self._xmin = xmin
                return
        xmin, rows = self._pg_hosts()
        hosts = [(hid, name, *rest) for hid, name, _state, *rest in rows]
        self._hosts_by_id = {h[0]: h for h in hosts}
        self._full_at = now
        self._apply(hosts, self._gpu_rows(), False, self._ladders, typical)
        self._xmin = xmin

    def _pg_hosts(self) -> tuple[int, list[tuple]]:
        """The oldest transaction in progress now and the online hosts, from one snapshot."""
        from inventory.choices import HostState
        from inventory.models import Host

        with connection.cursor() as cur:
            cur.execute(
                f"WITH s AS (SELECT txid_snapshot_xmin(txid_current_snapshot()) AS xmin) "
                f"SELECT s.xmin, {_HOST_COLUMNS} FROM s LEFT JOIN {Host._meta.db_table} h ON h.state = %s "
                f"ORDER BY h.name",
                [HostState.ONLINE],
            )
            rows = cur.fetchall()
        return rows[0][0], [r[1:] for r in rows if r[1] is not None]

    def _pg_changed(self, since: int) -> tuple[int, list[tuple], dict[int, list[tuple]]]:
        """The oldest transaction in progress now, every host changed by a transaction at or after
        ``since``, and those hosts' usable GPUs (as ``_gpu_rows``): one statement, one snapshot (this
        runs before every decision)."""
        from inventory.choices import GPUMode
        from inventory.models import GPU, Host

        with connection.cursor() as cur:
            cur.execute(
                f"WITH s AS (SELECT txid_snapshot_xmin(txid_current_snapshot()) AS xmin) "
                f"SELECT s.xmin, {_HOST_COLUMNS}, {_GPU_COLUMNS} "
                f"FROM s LEFT JOIN {Host._meta.db_table} h ON h.capacity_version >= %s "
                f"LEFT JOIN {GPU._meta.db_table} g ON g.host_id = h.id AND {_GPU_USABLE} "
                f"ORDER BY h.name, g.model, g.pci_address",
                [since, GPUMode.DISABLED],
            )
            rows = cur.fetchall()
        hosts: dict[int, tuple] = {}
        gpus: dict[int, list[tuple]] = {}
        width = 1 + len(_HOST_COLUMNS.split(", "))  # xmin, then the host columns, then the GPU columns
        for r in rows:
            if r[1] is None:
                continue
            hosts.setdefault(r[1], r[1:width])
            if r[width] is not None:
                gpus.setdefault(r[1], []).append(r[width:])
        return rows[0][0], list(hosts.values()), gpus

    def _apply(self, hosts, gpus, incremental: bool, ladders, typical) -> None:
        """Rebuild the cluster from ``hosts`` (all online hosts), or update the nodes of ``hosts`` (some)."""
        if any(row[3] and row[3] not in self.profiles for rows in gpus.values() for row in rows):
            # a GPU runs a profile added since this process read the catalog: read it, rebuild
            if self._catalog_reread:
                raise RuntimeError("a GPU runs a vGPU profile missing from the catalog")
            self._catalog_reread = True
            try:
                self._read_catalog(time.monotonic())
                self._structure = None
                return self.refresh(full=True)
            finally:
                self._catalog_reread = False
        unit = self.vcpu_milli
        structure, states, node_host, node_gpus, node_fb, nodes = [], [], [], [], [], []
        for hid, name, cores, memory, vcpus_used, mem_used, _version in hosts:
            groups: dict[str, list] = {}
            for row in gpus.get(hid, ()):
                groups.setdefault(row[1], []).append(row)
            groups = groups or {"": []}
            cpu_free, mem_free = (cores - vcpus_used) * unit, memory - mem_used
            for model, rows in groups.items():
                node_name = name if len(groups) == 1 else f"{name}/{model}"
                structure.append((hid, node_name, model, tuple((r[0], r[2]) for r in rows)))
                states.append((cpu_free, mem_free, tuple(_gpu_state(r[2], r[3], r[4]) for r in rows)))
                node_host.append(hid)
                node_gpus.append(tuple(r[0] for r in rows))
                node_fb.append(tuple(r[5] for r in rows))
                nodes.append((node_name, cores * unit, memory, model, rows))
        if incremental:
            # Only some hosts moved: same GPUs and modes (else the fingerprint would have changed)?
            index = [self._node_of.get(s[:2]) for s in structure]
            if None in index or any(self._structure[i] != s for i, s in zip(index, structure, strict=True)):
                return self.refresh(full=True)
            for i, st, fb in zip(index, states, node_fb, strict=True):
                if st != self._states[i]:
                    self.cluster.set_node(i, st[0], st[1], [engine.GPUState(*g) for g in st[2]])
                    self._states[i] = st
                self._node_fb[i] = fb
            return None
        structure = tuple(structure)
        if structure != self._structure or self.cluster is None:
            ladders = dict(ladders)
            for model in {n[3] for n in nodes} - set(ladders):
                ladders[model] = Ladder(model, 1, ())  # a board without catalog profiles: whole GPUs only
            self.cluster = engine.Cluster(
                [
                    engine.NodeState(node_name, cap, memory, model, [engine.GPUState(mode=_MODE[r[2]]) for r in rows])
                    for node_name, cap, memory, model, rows in nodes
                ],
                "vgpu",
                ladders,
            )
            if self.spread:
                self.cluster.spread_ties(os.getpid())
            self.policy = engine.make_policy(self.policy_name, self.cluster, seed=self.seed, typical=typical)
            self._structure = structure
            self._node_of = {s[:2]: i for i, s in enumerate(structure)}
            self._states = [None] * len(nodes)
            self._node_host, self._node_gpus, self._node_fb = node_host, node_gpus, node_fb
            self.rebuilds += 1
        for i, st in enumerate(states):
            if st != self._states[i]:
                self.cluster.set_node(i, st[0], st[1], [engine.GPUState(*g) for g in st[2]])
                self._states[i] = st
        return None

    # -- deciding ------------------------------------------------------------------------------
    def place(self, request: engine.Request, *, fresh: bool = False, avoid=frozenset()) -> Choice:
        """The policy's choice on the fleet as the database has it now. ``fresh`` reads every row
        first, and hosts in ``avoid`` are left out if anything else fits: the request service asks for
        both after losing a claim (another request is filling that host right now; going elsewhere
        beats queueing behind it and losing again)."""
        with self._lock:
            if request.profile and request.profile not in self.profiles:
                fresh = True  # a profile this process has not read yet: read the catalog first
            try:
                self.refresh(full=fresh)
            except BaseException:
                self._structure = None  # half-applied: the next decision reads everything again
                raise
            return self._choice(request, avoid)

    def _choice(self, request: engine.Request, avoid=frozenset()) -> Choice:
        decision = self._place_avoiding(request, avoid)
        if decision is None:
            raise self._why_not(request)
        i = decision.node_index
        profile_id = decision.profile_key or None
        return Choice(
            host_id=self._node_host[i],
            gpu_ids=tuple(self._node_gpus[i][g] for g in decision.gpus),
            profile_id=profile_id,
            whole_framebuffer_mib=0 if profile_id else sum(self._node_fb[i][g] for g in decision.gpus),
        )

    def _place_avoiding(self, request: engine.Request, avoid) -> engine.Decision | None:
        nodes = [i for i, host in enumerate(self._node_host) if host in avoid] if avoid else []
        if not nodes:
            return self.policy.place(request)
        for i in nodes:  # for this decision only: no room at all on those hosts
            cpu, mem, gpus = self._states[i]
            self.cluster.set_node(i, -1, -1, [engine.GPUState(*g) for g in gpus])
        try:
            decision = self.policy.place(request)
        finally:
            for i in nodes:
                cpu, mem, gpus = self._states[i]
                self.cluster.set_node(i, cpu, mem, [engine.GPUState(*g) for g in gpus])
        return decision if decision is not None else self.policy.place(request)

    def _why_not(self, req: engine.Request) -> NoPlacement:
        """Which resource is short: the board, its instances / whole GPUs, or host vCPUs and RAM."""
        c = self.cluster
        wanted = " or ".join(sorted(req.models)) if req.models else "any model"
        cands = c.candidates(req.models) if req.num_gpu else list(range(c.n))
        if req.is_share:
            label = _share_label(c, req)
            boards = [i for i in cands if c.share_profile(i, req) is not None and c.ngpu[i]]
            boards = [i for i in boards if any(c.home[i][g] != FREE_WHOLE for g in range(c.ngpu[i]))]
            if not boards:
                return NoPlacement(f"No online host has {_a(wanted)} GPU in vGPU mode.", "gpu_model")
            relaxed = engine.Request(0, 0, 1, req.gpu_milli, req.models, req.series, req.framebuffer, req.profile)
            if not any(c.node_fits(i, relaxed) for i in boards):
                return NoPlacement(
                    f"No free {label} instance: every {wanted} GPU is full or runs another profile.", "gpu_instances"
                )
            short = f"a free {label} instance"
        elif req.num_gpu:
            relaxed = engine.Request(0, 0, req.num_gpu, MILLI, req.models)
            if not any(c.node_fits(i, relaxed) for i in cands):
                if self._passthrough_blocked(req, cands):
                    return NoPlacement(NO_PASSTHROUGH_HOST, "gpu_passthrough")
                return NoPlacement(
                    f"No online host has {req.num_gpu} free whole GPU(s) ({wanted}) for passthrough.",
                    "gpu_passthrough",
                )
            short = f"{req.num_gpu} free whole GPU(s)"
        else:
            short = "room"
        return NoPlacement(
            f"No host with {short} also has {req.cpu_milli // self.vcpu_milli} free vCPUs and "
            f"{req.memory_mib} MiB of free RAM.",
            "host_cpu_memory",
        )

    def _passthrough_blocked(self, req: engine.Request, cands) -> bool:
        """No fleet node has enough GPUs that may go whole, but online hosts that cannot pass PCI devices
        through have some (one query, on this failure path only)."""
        from inventory.choices import WHOLE_MODES
        from inventory.models import GPU, Host

        if any(sum(h != EMPTY_VGPU for h in self.cluster.home[i]) >= req.num_gpu for i in cands):
            return False  # whole GPUs exist where they can go: they are taken
        memo = self.blocked_memo if self.blocked_memo is not None else {}
        if "models" not in memo:
            blocked = GPU.objects.present().filter(mode__in=WHOLE_MODES, host__in=Host.objects.online())
            memo["models"] = set(blocked.filter(host__passthrough_capable=False).values_list("model", flat=True))
        return bool(memo["models"] & set(req.models or memo["models"]))


def _a(model: str) -> str:
    return f"an {model}" if model[:1] in "AEFHILMNORSX" else f"a {model}"  # as read aloud: an A40, an L40S


def _share_label(c: engine.Cluster, req: engine.Request) -> str:
    names = set()
    for i in c.candidates(req.models):
        key = c.share_profile(i, req)
        if key is not None:
            names.add(c.lad[i].name[key])
    return "/".join(sorted(names)) or "vGPU"


def _gpu_state(mode: str, profile_id, used: int) -> tuple:
    """(used_milli, profile, instances, passthrough, mode) for engine.GPUState."""
    if profile_id:
        return (0, profile_id, used, False, _MODE[mode])
    # used without a profile: held whole (a flexible GPU of a host that lost passthrough reads "vgpu")
    return (0, 0, 0, bool(used), _MODE[mode])


def _ladder_sig(ladders: dict) -> tuple:
    return tuple(sorted((m, lad.fb, tuple(sorted(lad.maxi.items()))) for m, lad in ladders.items()))


_fleets: dict = {}
_fleets_lock = threading.Lock()


def fleet() -> Fleet:
    """This process's fleet for the configured policy and vCPU weight."""
    key = (settings.PORTAL_PLACEMENT_POLICY, settings.PORTAL_PLACEMENT_VCPU_MILLI)
    with _fleets_lock:
        f = _fleets.get(key)
        if f is None:
            f = _fleets[key] = Fleet(
                key[0], vcpu_milli=key[1], spread=getattr(settings, "PORTAL_PLACEMENT_SPREAD_TIES", True)
            )
        return f


def use_fleet(f: Fleet | None) -> None:
    """Install ``f`` as this process's fleet for its policy (the replay passes its own demand); None forgets all."""
    with _fleets_lock:
        if f is None:
            _fleets.clear()
        else:
            _fleets[(f.policy_name, f.vcpu_milli)] = f


def profile(profile_id: int):
    """The catalog row of a profile the placement chose (read with the catalog, not once per request)."""
    from inventory.models import VGPUProfile

    return fleet().profiles.get(profile_id) or VGPUProfile.objects.get(pk=profile_id)


def place(template, *, fresh: bool = False, avoid=frozenset()) -> Choice:
    """The deployment's policy's choice for one desktop of ``template`` (raises NoPlacement)."""
    f = fleet()
    return f.place(shape_of(template, f.vcpu_milli), fresh=fresh, avoid=avoid)
