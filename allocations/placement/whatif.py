"""Capacity what-if: replay a demand through the placement engine on the fleet as it is ("before") and
as it would be with hosts drained or added ("after"), and say what each would refuse, strand and serve.

The replay (``replay``) is pure: host shapes, arrivals and the catalog's ladders in, an ``Outcome`` out.
Every host starts empty; each arrival is placed by the deployment's policy or refused on the spot (no
queue, as the request service does), and departs after its duration. Measures:

- refused: arrivals no host could take, in all and per template;
- stranded capacity: free GPU capacity (vGPU instances left at their profile's share of the board, or
  empty GPUs) that no offered template could use where it is: a GPU running a profile nobody asks for,
  a board no template allows, GPUs on a host whose vCPUs or RAM are gone. Kept per host after every
  event; reported as its time-weighted mean and its peak, in GPUs;
- GPU-hours served: each placed desktop's share of a board (its profile's framebuffer / the board's,
  or its whole GPUs) × its hours, as the usage report counts them (``reports.usage``).

The rest reads the database: the online hosts and their usable GPUs (the rule ``placement.fleet``
reads them with), the demand of the last N days of Desktop rows (requested_at, template, actual run
time, else the duration asked for), optionally scaled, or a chosen template mix; ``run_whatif`` runs
both replays of one ``Scenario``. Deterministic: the same scenario and seed give the same figures.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.utils import timezone

from allocations.models import Desktop, DesktopTemplate
from allocations.placement import engine
from allocations.placement.engine import MILLI, Ladder
from allocations.placement.fleet import Fleet
from allocations.placement.shapes import catalog_ladders, shape_of
from core.errors import PortalError
from inventory.models import Host, VGPUProfile

MODES = {"vgpu": "vgpu", "passthrough": "whole", "flexible": "any"}  # GPU row mode → engine mode
MAX_ARRIVALS = 100_000  # a bigger demand is refused (400) rather than tying a web worker up
MAX_DAYS, MAX_SCALE, MAX_NEW_HOSTS, MAX_NEW_GPUS = 90, 10.0, 50, 16
NEW_HOST_CORES, NEW_HOST_MEMORY_GIB = 64, 512  # a new host's vCPUs and RAM when the form names only its GPUs


# -- plain data and the replay (pure) ----------------------------------------------------------


@dataclass(frozen=True)
class HostShape:
    """A host as the what-if sees it: its size and GPUs as (board model, engine mode)."""

    name: str
    cpu_cores: int
    memory_mib: int
    gpus: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Arrival:
    at_s: float  # seconds from the start of the window
    template: str
    request: engine.Request
    duration_s: float


@dataclass
class Outcome:
    hosts: int
    gpus: int
    requests: int = 0
    placed: int = 0
    refused: int = 0
    by_template: dict = field(default_factory=dict)  # name → {"requests": n, "refused": n}
    gpu_hours: float = 0.0
    stranded_mean: float = 0.0  # GPUs
    stranded_peak: float = 0.0

    @property
    def refused_pct(self) -> float:
        return 100.0 * self.refused / self.requests if self.requests else 0.0

    def as_dict(self) -> dict:
        return {
            "hosts": self.hosts,
            "gpus": self.gpus,
            "requests": self.requests,
            "placed": self.placed,
            "refused": self.refused,
            "refused_pct": round(self.refused_pct, 1),
            "gpu_hours_served": round(self.gpu_hours, 1),
            "stranded_gpus_mean": round(self.stranded_mean, 2),
            "stranded_gpus_peak": round(self.stranded_peak, 2),
            "by_template": {name: dict(v) for name, v in sorted(self.by_template.items())},
        }


def build_cluster(hosts: Sequence[HostShape], ladders: Mapping[str, Ladder], vcpu_milli: int):
    """The engine's cluster (vgpu model) for ``hosts``: one node per host and board model, as
    ``placement.fleet`` builds it. Returns (cluster, siblings: node → the nodes of the same host)."""
    ladders = dict(ladders)
    nodes, host_of = [], []
    for h, host in enumerate(hosts):
        groups: dict[str, list[str]] = {}
        for model, mode in host.gpus:
            groups.setdefault(model, []).append(mode)
        for model, modes in (groups or {"": []}).items():
            ladders.setdefault(model, Ladder(model, 1, ()))  # a board without catalog profiles: whole GPUs only
            name = host.name if len(groups) <= 1 else f"{host.name}/{model}"
            gpus = [engine.GPUState(mode=mode) for mode in modes]
            nodes.append(engine.NodeState(name, host.cpu_cores * vcpu_milli, host.memory_mib, model, gpus))
            host_of.append(h)
    cluster = engine.Cluster(nodes, "vgpu", ladders)
    siblings = [[j for j, hj in enumerate(host_of) if hj == hi and j != i] for i, hi in enumerate(host_of)]
    return cluster, siblings


def _stranded_milli(c: engine.Cluster, i: int, shapes: Sequence[engine.Request]) -> int:
    """Free GPU capacity on node i that none of ``shapes`` could take where it is (milli-GPU)."""
    fits = [r for r in shapes if c.node_fits(i, r)]
    total = 0
    for g in range(c.ngpu[i]):
        left = c.left[i][g]
        if left <= 0:
            continue
        usable = False
        for r in fits:
            if r.is_share:
                usable = c.gpu_can_host(i, g, r, c.share_profile(i, r))
            else:
                usable = c._is_free(i, g)  # node_fits saw enough free GPUs for the whole request
            if usable:
                break
        if not usable:
            total += left
    return total


def _share(c: engine.Cluster, req: engine.Request, d: engine.Decision) -> float:
    """GPUs a placed request holds, as the usage report counts them."""
    if req.num_gpu <= 0:
        return 0.0
    if req.is_share:
        return c.lad[d.node_index].size[d.profile_key] / c.fb[d.node_index]
    return float(req.num_gpu)


def replay(
    hosts: Sequence[HostShape],
    demand: Sequence[Arrival],
    ladders: Mapping[str, Ladder],
    *,
    policy: str = "ours",
    seed: int = 0,
    vcpu_milli: int = 1000,
    offered: Sequence[engine.Request] = (),
    horizon_s: float | None = None,
) -> Outcome:
    """Replay ``demand`` on empty ``hosts``. ``offered``: templates' shapes besides the demand's that
    stranded capacity is judged against; ``horizon_s``: where the window ends (figures stop there;
    None = when the last desktop leaves)."""
    cluster, siblings = build_cluster(hosts, ladders, vcpu_milli)
    requests = [a.request for a in demand]
    pol = engine.make_policy(policy, cluster, seed=seed, typical=engine.policy_typical(policy, requests or offered))
    shapes = list(dict.fromkeys(r for r in [*requests, *offered] if r.num_gpu > 0))
    out = Outcome(hosts=len(hosts), gpus=cluster.total_gpus)
    memo: dict = {}
    per_node = [0] * cluster.n

    def restrand(i: int) -> None:
        key = (cluster.key[i], cluster.mem_free[i])
        value = memo.get(key)
        if value is None:
            value = memo[key] = _stranded_milli(cluster, i, shapes)
        per_node[i] = value

    for i in range(cluster.n):
        restrand(i)
    stranded = sum(per_node)
    end = horizon_s if horizon_s is not None else max((a.at_s + a.duration_s for a in demand), default=0.0)
    clock, integral, peak = 0.0, 0.0, stranded

    def advance(to: float) -> None:
        nonlocal clock, integral
        to = min(to, end)
        if to > clock:
            integral += stranded * (to - clock)
            clock = to

    def touched(i: int) -> None:
        nonlocal stranded, peak
        for j in (i, *siblings[i]):
            if j != i:  # the host's vCPUs and RAM are shared by its per-board nodes
                gpus = cluster.node_state(j).gpus
                cluster.set_node(j, cluster.cpu_free[i], cluster.mem_free[i], gpus)
            stranded -= per_node[j]
            restrand(j)
            stranded += per_node[j]
        if clock < end or end == 0:
            peak = max(peak, stranded)

    leaving: list = []
    order = sorted(range(len(demand)), key=lambda k: (demand[k].at_s, k))
    for k in order:
        a = demand[k]
        while leaving and leaving[0][0] <= a.at_s:
            t, _, req, d = heapq.heappop(leaving)
            advance(t)
            cluster.release(req, d)
            touched(d.node_index)
        advance(a.at_s)
        row = out.by_template.setdefault(a.template, {"requests": 0, "refused": 0})
        row["requests"] += 1
        out.requests += 1
        d = pol.place(a.request)
        if d is None:
            row["refused"] += 1
            out.refused += 1
            continue
        cluster.apply(a.request, d)
        out.placed += 1
        stop = a.at_s + a.duration_s
        out.gpu_hours += _share(cluster, a.request, d) * max(0.0, min(stop, end) - a.at_s) / 3600
        heapq.heappush(leaving, (stop, k, a.request, d))
        touched(d.node_index)
    while leaving and leaving[0][0] < end:
        t, _, req, d = heapq.heappop(leaving)
        advance(t)
        cluster.release(req, d)
        touched(d.node_index)
    advance(end)
    out.stranded_mean = (integral / end if end > 0 else stranded) / MILLI
    out.stranded_peak = peak / MILLI
    return out


# -- the scenario: what the page and the API ask --------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    drain: tuple[str, ...] = ()  # host names
    add_like: tuple[tuple[str, int], ...] = ()  # (existing host's name, copies)
    add_new: tuple[tuple[str, int, int], ...] = ()  # (board model, GPUs per host, hosts)
    days: int = 30
    scale: float = 1.0
    mix: tuple[tuple[str, int, float], ...] = ()  # (template name, desktops, hours each); empty = history
    policy: str = ""  # "" = the deployment's
    seed: int = 0


def _int(value, what: str, low: int, high: int) -> int:
    text = str(value).strip()
    ok = text.isascii() and text.isdigit() and len(text) < 12 and not isinstance(value, bool | float)
    if not (ok and low <= int(text) <= high):
        raise PortalError(f"{what} must be a whole number from {low} to {high}.")
    return int(text)


def _float(value, what: str, low: float, high: float) -> float:
    try:
        number = float(str(value).strip()) if not isinstance(value, bool) else math.nan
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and low < number <= high):
        raise PortalError(f"{what} must be a number above {low:g} and at most {high:g}.")
    return number


def _list(data: Mapping, key: str) -> list:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise PortalError(f"{key} must be a list.")
    return value


def _name(value, what: str) -> str:
    if not isinstance(value, str | int) or not str(value).strip():
        raise PortalError(f"{what} must name one.")
    return str(value).strip()


def parse_scenario(data) -> Scenario:
    """A ``Scenario`` from the API's JSON (the page builds the same mapping from its form).

    ``{"drain": [host name, ...], "add": [{"like": host name, "count": n} | {"gpu_model": board,
    "gpus": n, "count": n}], "demand": {"days": 30, "scale": 1} | {"days": 30, "mix": [{"template":
    name, "count": n, "hours": h}]}, "policy": name, "seed": n}``. Bad input raises PortalError (400)."""
    if not isinstance(data, Mapping):
        raise PortalError("Send a JSON object.")
    unknown = set(data) - {"drain", "add", "demand", "policy", "seed"}
    if unknown:
        raise PortalError(f"Unknown field(s): {', '.join(sorted(map(str, unknown)))}.")
    drain = tuple(dict.fromkeys(_name(h, "Each host to drain") for h in _list(data, "drain")))
    like, new = [], []
    for item in _list(data, "add"):
        if not isinstance(item, Mapping):
            raise PortalError('Each host to add is {"like": host, "count": n} or {"gpu_model": board, "gpus": n}.')
        count = _int(item.get("count", 1), "The number of hosts to add", 1, MAX_NEW_HOSTS)
        if item.get("like") not in (None, ""):
            like.append((_name(item["like"], "A host to copy"), count))
        elif item.get("gpu_model") not in (None, ""):
            gpus = _int(item.get("gpus", 1), "GPUs per new host", 1, MAX_NEW_GPUS)
            new.append((_name(item["gpu_model"], "A GPU model"), gpus, count))
        else:
            raise PortalError('Each host to add names an existing host to copy ("like") or a GPU model.')
    demand = data.get("demand") or {}
    if not isinstance(demand, Mapping):
        raise PortalError("demand must be an object.")
    days = _int(demand.get("days", 30), "The window in days", 1, MAX_DAYS)
    scale = _float(demand.get("scale", 1), "The scale factor", 0, MAX_SCALE)
    mix = []
    for item in _list(demand, "mix"):
        if not isinstance(item, Mapping):
            raise PortalError('Each part of the mix is {"template": name, "count": n, "hours": h}.')
        name = _name(item.get("template"), "Each part of the mix")
        count = _int(item.get("count"), "A mix's count", 1, MAX_ARRIVALS)
        mix.append((name, count, _float(item.get("hours", 8), "A mix's hours", 0, 24 * MAX_DAYS)))
    policy = str(data.get("policy") or "")
    if policy and policy not in engine.POLICIES:
        raise PortalError(f"Unknown placement policy {policy!r}; choose from {', '.join(sorted(engine.POLICIES))}.")
    seed = _int(data.get("seed", 0), "The seed", 0, 2**31 - 1)
    return Scenario(drain, tuple(like), tuple(new), days, scale, tuple(mix), policy, seed)


# -- reading the database ------------------------------------------------------------------------


def _gpus_by_host() -> dict[int, tuple[tuple[str, str], ...]]:
    """Each host's usable GPUs as (model, engine mode), read as the request service's fleet reads them."""
    rows = Fleet("first-fit", spread=False)._gpu_rows()  # one rule for "usable GPU", in placement.fleet
    return {hid: tuple((r[1], MODES[r[2]]) for r in gpus) for hid, gpus in rows.items()}


def current_fleet() -> list[HostShape]:
    """The online hosts as the placement sees them (sizes, usable GPUs), by name."""
    gpus = _gpus_by_host()
    hosts = Host.objects.online().order_by("name").values_list("pk", "name", "cpu_cores", "memory_mib")
    return [HostShape(name, cores, memory, gpus.get(pk, ())) for pk, name, cores, memory in hosts]


def catalog() -> dict[str, Ladder]:
    return catalog_ladders(VGPUProfile.objects.all())


def history_demand(days: int, scale: float, *, seed: int, now=None, vcpu_milli: int) -> list[Arrival]:
    """Desktops requested in the last ``days``: each arrives when it was requested and stays for as long
    as it ran (started to ended; a running one until it expires), else for the hours it asked for.
    ``scale``: each request counted ⌊scale⌋ times, plus once more with the fraction's odds (seeded)."""
    now = now or timezone.now()
    since = now - timezone.timedelta(days=days)
    rows = (
        Desktop.objects.filter(requested_at__gte=since, requested_at__lt=now)
        .select_related("template__profile")
        .order_by("requested_at", "pk")
    )
    rng = random.Random(seed)
    whole, fraction = int(scale), scale - int(scale)
    shapes: dict[int, engine.Request] = {}
    out = []
    for d in rows.iterator(chunk_size=2000):
        if d.template_id not in shapes:
            shapes[d.template_id] = shape_of(d.template, vcpu_milli)
        if d.started_at and (d.ended_at or d.expires_at):
            seconds = ((d.ended_at or d.expires_at) - d.started_at).total_seconds()
        else:
            seconds = d.duration_hours * 3600
        copies = whole + (1 if fraction and rng.random() < fraction else 0)
        arrival = Arrival(
            (d.requested_at - since).total_seconds(), d.template.name, shapes[d.template_id], max(seconds, 1.0)
        )
        out.extend([arrival] * copies)
        if len(out) > MAX_ARRIVALS:
            raise PortalError(f"That demand is over {MAX_ARRIVALS:,} requests: choose fewer days or a smaller scale.")
    return out


def mix_demand(mix, days: int, *, seed: int, vcpu_milli: int) -> list[Arrival]:
    """A chosen mix: ``count`` desktops of each template, arriving at random (seeded) over ``days``."""
    names = [name for name, _, _ in mix]
    templates = {t.name: t for t in DesktopTemplate.objects.filter(name__in=names).select_related("profile")}
    missing = [n for n in names if n not in templates]
    if missing:
        raise PortalError(f"No template named {', '.join(missing)}.")
    if sum(count for _, count, _ in mix) > MAX_ARRIVALS:
        raise PortalError(f"That demand is over {MAX_ARRIVALS:,} requests: ask for fewer.")
    rng, window = random.Random(seed), days * 86400
    out = []
    for name, count, hours in mix:
        shape = shape_of(templates[name], vcpu_milli)
        out.extend(Arrival(rng.uniform(0, window), name, shape, hours * 3600) for _ in range(count))
    return out


def changed_fleet(before: Sequence[HostShape], scenario: Scenario, ladders: Mapping[str, Ladder]) -> list[HostShape]:
    """``before`` less the drained hosts, plus the added ones (copies of a host's shape, or new hosts)."""
    online = {h.name for h in before}
    missing = [name for name in scenario.drain if name not in online]
    if missing:
        raise PortalError(f"No online host named {', '.join(missing)} to drain.")
    after = [h for h in before if h.name not in scenario.drain]
    if scenario.add_like:
        gpus = _gpus_by_host()
        rows = Host.objects.filter(name__in=[n for n, _ in scenario.add_like])
        like = {h.name: HostShape(h.name, h.cpu_cores, h.memory_mib, gpus.get(h.pk, ())) for h in rows}
        for name, count in scenario.add_like:
            if name not in like:
                raise PortalError(f"No host named {name} to copy.")
            after += [
                HostShape(f"{name}+{k}", like[name].cpu_cores, like[name].memory_mib, like[name].gpus)
                for k in range(1, count + 1)
            ]
    for n, (model, per_host, count) in enumerate(scenario.add_new, 1):
        if model not in ladders:
            raise PortalError(f"{model} is not a board of the vGPU catalog; choose from {', '.join(sorted(ladders))}.")
        shape = ((model, "any"),) * per_host  # flexible GPUs: vGPUs, or whole while empty
        after += [
            HostShape(f"new{n}-{model.lower()}-{k}", NEW_HOST_CORES, NEW_HOST_MEMORY_GIB * 1024, shape)
            for k in range(1, count + 1)
        ]
    return after


# -- one what-if, in figures and in words ------------------------------------------------------------


def run_whatif(scenario: Scenario, *, now=None, ahead: Sequence[Arrival] = ()) -> dict:
    """Replay the scenario's demand (and ``ahead``: ``whatif_demand``) on the fleet as it is and as changed."""
    started = time.perf_counter()
    policy = scenario.policy or settings.PORTAL_PLACEMENT_POLICY
    unit = settings.PORTAL_PLACEMENT_VCPU_MILLI
    ladders = catalog()
    before_hosts = current_fleet()
    after_hosts = changed_fleet(before_hosts, scenario, ladders)
    if scenario.mix:
        demand = mix_demand(scenario.mix, scenario.days, seed=scenario.seed, vcpu_milli=unit)
    else:
        demand = history_demand(scenario.days, scenario.scale, seed=scenario.seed, now=now, vcpu_milli=unit)
    offered = [shape_of(t, unit) for t in DesktopTemplate.objects.filter(is_active=True).select_related("profile")]
    options = {"policy": policy, "seed": scenario.seed, "vcpu_milli": unit, "offered": offered}
    options["horizon_s"] = scenario.days * 86400  # the window ends now (history) or after ``days`` (mix)
    before = replay(before_hosts, [*demand, *ahead], ladders, **options)
    after = replay(after_hosts, [*demand, *ahead], ladders, **options)
    return {
        "scenario": asdict(scenario) | {"policy": policy, "source": "mix" if scenario.mix else "history"},
        "before": before.as_dict(),
        "after": after.as_dict(),
        "templates": [
            {"template": name, "requests": row["requests"], "refused_before": row["refused"]}
            | {"refused_after": after.by_template[name]["refused"]}
            for name, row in sorted(before.by_template.items())
        ],
        "summary": describe(scenario, before, after, len(ahead)),
        "elapsed_s": round(time.perf_counter() - started, 3),
    }


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def changes_in_words(scenario: Scenario) -> str:
    parts = []
    if scenario.drain:
        parts.append("draining " + ", ".join(scenario.drain))
    for name, count in scenario.add_like:
        parts.append(f"adding {_plural(count, 'host')} like {name}")
    for model, gpus, count in scenario.add_new:
        parts.append(f"adding {_plural(count, 'host')} with {gpus} × {model}")
    return " and ".join(parts)


def describe(scenario: Scenario, before: Outcome, after: Outcome, ahead: int = 0) -> str:
    """The result in one or two sentences, e.g. "Draining lab-a16 would refuse 12 of 340 requests (3.5%)
    instead of 0 (0.0%); …"."""
    source = (
        f"a mix of {_plural(before.requests - ahead, 'request')} over {scenario.days} days"
        if scenario.mix
        else f"the last {scenario.days} days' {_plural(before.requests - ahead, 'request')}"
        + (f" (×{scenario.scale:g})" if scenario.scale != 1 else "")
    )
    if not before.requests:
        return f"There is no demand to replay: {source}."
    change = changes_in_words(scenario)
    if not change:
        return (
            f"Replaying {source}, the fleet as it is refuses {after.refused:,} of {after.requests:,} "
            f"({after.refused_pct:.1f}%); stranded capacity averages {after.stranded_mean:.1f} GPUs "
            f"(peak {after.stranded_peak:.1f}) and it serves {after.gpu_hours:,.1f} GPU-hours."
        )
    return (
        f"Replaying {source}: {change[0].upper()}{change[1:]} would refuse {after.refused:,} of "
        f"{after.requests:,} requests ({after.refused_pct:.1f}%) instead of {before.refused:,} "
        f"({before.refused_pct:.1f}%); stranded capacity would average {after.stranded_mean:.1f} GPUs "
        f"(peak {after.stranded_peak:.1f}) instead of {before.stranded_mean:.1f} (peak {before.stranded_peak:.1f}); "
        f"GPU-hours served {after.gpu_hours:,.1f} instead of {before.gpu_hours:,.1f}."
    )
