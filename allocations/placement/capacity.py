"""Where a template could run now, and the fleet's free and stranded capacity: read-only questions
asked of the placement engine, claiming nothing.

``snapshot()`` builds the engine's ``Cluster`` from every host of the database (not only the online
ones the request service places on), by the rules ``fleet.Fleet`` reads the rows with (usable GPUs,
modes, passthrough), so each host can be judged and each "no" explained:

- ``where_could_run(template)``: per host, whether the engine's rules let one desktop of the template
  start there now, and why not in words (host offline or in maintenance, no GPU of that model, no
  profile of the series on the board, boards full or running another profile, no passthrough, free
  vCPUs/RAM); and the deployment's policy's own choice (``fleet.place``, what a request would get).
- ``stranded_now()``: free GPU capacity of the online hosts that no offered template can use now
  (``engine.stranded``), GPU by GPU with the reason.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, replace

from django.conf import settings

from allocations.placement import fleet as placement
from allocations.placement.engine import stranded as strand
from allocations.placement.engine.state import EMPTY_VGPU, FREE_WHOLE, WHOLE, WHOLE_FREE
from allocations.placement.shapes import shape_of
from core.units import gib
from inventory.choices import HostState
from inventory.models import Host

STRANDED_WORDS = {
    strand.CPU_MEMORY: "the host's free vCPUs or RAM are too few for any offered template this GPU could take",
    strand.PROFILE: "it runs {profile}, which no offered template takes",
    strand.WHOLE_ONLY: "it can only be handed out whole, and no offered whole-GPU template fits here",
    strand.NO_REQUEST: "no offered template can start a vGPU on a {model}",
}


class _EveryHost(placement.Fleet):
    """The fleet's reading of the rows, for every host whatever its state, read once."""

    def __init__(self):
        super().__init__("first-fit", vcpu_milli=settings.PORTAL_PLACEMENT_VCPU_MILLI, demand=[], spread=False)

    def _host_rows(self) -> list[tuple]:
        """Every host in service (retired ones are history), whatever its state."""
        columns = ("id", "name", "cpu_cores", "memory_mib", "vcpus_used", "memory_used_mib", "capacity_version")
        return list(Host.objects.active().order_by("name").values_list(*columns))

    def refresh(self, full: bool = False) -> None:
        self._read_catalog(time.monotonic())
        self._apply(self._host_rows(), self._gpu_rows(), False, self._ladders, [])


@dataclass
class Snapshot:
    """The engine's cluster of every host, and which nodes and GPU rows are whose."""

    cluster: object
    hosts: dict  # id → Host
    nodes_of: dict  # host id → node indexes
    node_gpus: list  # node index → GPU ids, as the cluster orders them

    def online_nodes(self) -> list[int]:
        return [i for hid, nodes in self.nodes_of.items() if self.hosts[hid].state == HostState.ONLINE for i in nodes]


def snapshot() -> Snapshot:
    reader = _EveryHost()
    reader.refresh()
    nodes_of: dict[int, list[int]] = {}
    for i, hid in enumerate(reader._node_host):
        nodes_of.setdefault(hid, []).append(i)
    hosts = {h.pk: h for h in Host.objects.filter(pk__in=nodes_of)}
    return Snapshot(reader.cluster, hosts, nodes_of, list(reader._node_gpus))


# -- where a template could run ------------------------------------------------------------------
@dataclass
class HostVerdict:
    host: Host
    fits: bool
    reason: str  # why not, in words; what it would get when it fits
    chosen: bool = False  # the policy would place the next desktop here


@dataclass
class Placement:
    verdicts: list[HostVerdict] = field(default_factory=list)
    choice_host: str | None = None
    choice_reason: str = ""  # when nothing fits: the request service's own words

    def as_dict(self) -> dict:
        return {
            "would_place_on": self.choice_host,
            "why_not": self.choice_reason,
            "hosts": [
                {"host": v.host.name, "state": v.host.state, "fits": v.fits, "chosen": v.chosen, "reason": v.reason}
                for v in self.verdicts
            ],
        }


def where_could_run(template, snap: Snapshot | None = None) -> Placement:
    """Every host's verdict for one desktop of ``template`` now, and the policy's choice."""
    snap = snap or snapshot()
    req = shape_of(template)
    result = Placement()
    try:
        result.choice_host = Host.objects.get(pk=placement.place(template).host_id).name
    except placement.NoPlacement as exc:
        result.choice_reason = exc.message
    for hid in sorted(snap.hosts, key=lambda h: snap.hosts[h].name):
        host = snap.hosts[hid]
        fits, reason = _verdict(snap, host, req, template)
        result.verdicts.append(HostVerdict(host, fits, reason, chosen=host.name == result.choice_host))
    return result


def _verdict(snap: Snapshot, host: Host, req, template) -> tuple[bool, str]:
    c = snap.cluster
    if host.state == HostState.OFFLINE:
        return False, "Host is offline: its worker or libvirt does not answer."
    if host.state != HostState.ONLINE:
        why = getattr(host, "maintenance_reason", "")
        return False, f"Host is in {host.get_state_display().lower()}: it takes no new desktops" + (
            f" ({why.rstrip('.')})." if why else "."
        )
    nodes = snap.nodes_of[host.pk]
    wanted = " or ".join(sorted(req.models)) if req.models else "any model"
    if req.num_gpu and not req.is_share and not host.passthrough_capable:
        note = f" ({host.passthrough_note})" if host.passthrough_note else ""
        return False, f"Host cannot hand whole GPUs to desktops (no IOMMU/VFIO passthrough){note}."
    cands = [i for i in nodes if not req.num_gpu or (c.ngpu[i] and (req.models is None or c.gmodel[i] in req.models))]
    if not cands:
        has = Counter(c.gmodel[i] for i in nodes for _ in range(c.ngpu[i]))
        has_words = ", ".join(f"{n} × {m}" for m, n in sorted(has.items())) or "no usable GPU"
        return False, f"No {wanted} GPU here (it has {has_words})."
    if req.is_share:
        cands = [i for i in cands if c.share_profile(i, req) is not None]
        if not cands:
            return False, (
                f"Its boards have no {template.profile_series}-series profile of at least "
                f"{req.gpu_milli / 10:g}% of the board."
            )
        gpu_ok = [i for i in cands if any(strand.gpu_takes(c, i, g, req) for g in range(c.ngpu[i]))]
        if not gpu_ok:
            return False, "No GPU can take it: " + _describe_gpus(c, cands, req) + "."
    elif req.num_gpu:
        gpu_ok = [i for i in cands if c.nfree[i] >= req.num_gpu]
        if not gpu_ok:
            free = max(c.nfree[i] for i in cands)
            return False, (
                f"Needs {req.num_gpu} whole GPU(s) free at once; {free} free here ({_describe_gpus(c, cands, req)})."
            )
    else:
        gpu_ok = cands
    fitting = [i for i in gpu_ok if c.node_fits(i, req)]
    if not fitting:
        i = gpu_ok[0]
        vcpus_free = c.cpu_free[i] // placement.fleet().vcpu_milli
        return False, (
            f"Needs {template.vcpus} vCPUs and {gib(template.memory_mib)} RAM; "
            f"{max(vcpus_free, 0)} vCPUs and {gib(max(c.mem_free[i], 0))} free."
        )
    i = fitting[0]
    if req.is_share:
        size = c.share_profile(i, req)
        return True, f"Fits: {placement._a(c.lad[i].name[size])} instance on {placement._a(c.gmodel[i])}."
    if req.num_gpu:
        return True, f"Fits: {req.num_gpu} whole {c.gmodel[i]} GPU(s)."
    return True, "Fits: vCPUs and RAM free."


def _describe_gpus(c, nodes: list[int], req) -> str:
    """The GPUs of ``nodes`` by what keeps them from the request: 'A40-8Q full (6/6) × 2, passthrough-only × 1'."""
    size_of = {i: c.share_profile(i, req) if req.is_share else None for i in nodes}
    words: Counter = Counter()
    for i in nodes:
        for g in range(c.ngpu[i]):
            slot, used = c.prof[i][g], c.used[i][g]
            if slot > 0:
                name, most = c.lad[i].name[slot], c.lad[i].maxi[slot]
                if req.is_share and slot == size_of[i] and used >= most:
                    words[f"full of {name} ({used}/{most})"] += 1
                elif req.is_share and slot == size_of[i]:
                    words[f"runs {name} with room"] += 1
                else:
                    words[f"runs {name} (another profile)" if req.is_share else f"runs {name} instances"] += 1
            elif slot == WHOLE:
                words["taken whole"] += 1
            elif slot == FREE_WHOLE:
                words["passthrough-only" if req.is_share else "free"] += 1
            elif slot == EMPTY_VGPU:
                words["empty" if req.is_share else "vGPU-only mode"] += 1
            else:
                words["empty"] += 1
    return ", ".join(f"{n} {w}" for w, n in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])))


# -- the fleet's free and stranded capacity --------------------------------------------------------
def offered_templates():
    """Templates that can be asked for now: active, not retired, offered to at least one active tenant."""
    from allocations.models import DesktopTemplate

    return (
        DesktopTemplate.objects.filter(is_active=True, retired_at__isnull=True, allowed_tenants__is_active=True)
        .distinct()
        .select_related("profile")
        .order_by("name")
    )


def capacity_now(snap: Snapshot | None = None) -> dict:
    """The online hosts' free capacity: vGPU instances per profile, boards entirely free (and those that
    can go whole), and what no offered template can use (stranded), GPU by GPU with the reason.

    Without ``snap`` it reads this process's placement fleet (online hosts, brought up to date by its
    incremental refresh) rather than building a cluster of every host: the fleet overview asks at every
    page view, and at a thousand hosts a fresh build costs more than the page may."""
    templates = list(offered_templates())
    if snap is not None:
        node_host = [None] * snap.cluster.n
        for hid, nodes in snap.nodes_of.items():
            for i in nodes:
                node_host[i] = hid
        return _capacity(snap.cluster, snap.online_nodes(), node_host, snap.node_gpus, templates)
    f = placement.fleet()
    with f._lock:
        f.refresh()
        c = f.cluster
        # A node's stranded GPUs follow from its board model, its GPUs' modes and its state (free CPU and
        # memory, each GPU's profile and instances): what the fleet sets the node from. Nodes alike in
        # those (most empty hosts of one kind) are judged once.
        kinds = [(c.gmodel[i], tuple(m for _id, m in f._structure[i][3]), f._states[i]) for i in range(c.n)]
        return _capacity(c, list(range(c.n)), f._node_host, f._node_gpus, templates, kinds)


def _needed(requests: list) -> list:
    """The requests that decide what is stranded: a GPU one of them can use is not stranded, so a request
    asking for the same GPU part as another with at least its CPU and memory adds nothing (whatever it
    fits, the smaller one fits), nor does one without GPUs. 151 trace shapes come down to 29."""
    by_part: dict = {}
    for r in requests:
        if r.num_gpu > 0:
            by_part.setdefault(replace(r, cpu_milli=0, memory_mib=0), set()).add((r.cpu_milli, r.memory_mib))
    kept = []
    for part, sizes in by_part.items():
        for cpu, mem in sizes:
            if not any(c2 <= cpu and m2 <= mem and (c2, m2) != (cpu, mem) for c2, m2 in sizes):
                kept.append(replace(part, cpu_milli=cpu, memory_mib=mem))
    return kept


#: What the last ``capacity_now`` of this process found per kind of node, kept while the fleet's cluster
#: and the offered requests stay the same: a page view judges only the nodes that changed since.
_judged: dict = {"cluster": None, "requests": None, "kinds": {}}
MOST_KINDS_KEPT = 50_000


def _stranded(c, requests: list, nodes: list[int], kinds: list | None) -> list:
    if kinds is None:
        return strand.stranded_gpus(c, requests, nodes)
    if _judged["cluster"] is not c or _judged["requests"] != requests or len(_judged["kinds"]) > MOST_KINDS_KEPT:
        _judged.update(cluster=c, requests=list(requests), kinds={})
    seen = _judged["kinds"]
    out = []
    for i in nodes:
        found = seen.get(kinds[i])
        if found is None:
            found = seen[kinds[i]] = [(s.gpu, s.milli, s.reason) for s in strand.stranded_gpus(c, requests, [i])]
        out += [strand.StrandedGPU(i, g, milli, reason) for g, milli, reason in found]
    return out


def _capacity(c, online: list[int], node_host: list, node_gpus: list, templates: list, kinds=None) -> dict:
    requests = _needed([shape_of(t) for t in templates])
    instances: dict[str, dict] = {}
    empty_boards: Counter = Counter()
    whole_free: Counter = Counter()
    for i in online:
        for g in range(c.ngpu[i]):
            slot, used = c.prof[i][g], c.used[i][g]
            if slot > 0:
                row = instances.setdefault(c.lad[i].name[slot], {"profile": c.lad[i].name[slot], "free": 0, "gpus": 0})
                row["free"] += c.lad[i].maxi[slot] - used
                row["gpus"] += 1
            elif slot != WHOLE:
                empty_boards[c.gmodel[i]] += 1
                if slot in WHOLE_FREE:
                    whole_free[c.gmodel[i]] += 1
    found = _stranded(c, requests, online, kinds) if online else []
    names = dict(Host.objects.filter(pk__in={node_host[s.node] for s in found}).values_list("id", "name"))
    stranded, stranded_milli = [], 0
    for s in found:
        stranded_milli += s.milli
        slot = c.prof[s.node][s.gpu]
        profile = c.lad[s.node].name[slot] if slot > 0 else ""
        reason = STRANDED_WORDS[s.reason].format(profile=profile, model=c.gmodel[s.node])
        stranded.append(
            {
                "host": names[node_host[s.node]],
                "gpu_id": node_gpus[s.node][s.gpu],
                "model": c.gmodel[s.node],
                "gpus": round(s.milli / 1000, 3),
                "reason": s.reason,
                "why": reason[:1].upper() + reason[1:] + ".",
            }
        )
    free = strand.free_milli(c, online) if online else 0
    return {
        "offered_templates": [t.name for t in templates],
        "vgpu_instances_free": sorted(instances.values(), key=lambda r: r["profile"]),
        "empty_boards": dict(sorted(empty_boards.items())),
        "empty_boards_total": sum(empty_boards.values()),
        "whole_boards_free": dict(sorted(whole_free.items())),
        "whole_boards_free_total": sum(whole_free.values()),
        "free_gpus": round(free / 1000, 3),
        "stranded_gpus": round(stranded_milli / 1000, 3),
        "stranded_share": round(stranded_milli / free, 4) if free else 0.0,
        "stranded": stranded,
    }
