"""Bookings and idle reclamation on a week of the openb trace's arrivals, side by side in one run.

    .venv/bin/python bench/bookings_week.py [--pods default] [--gpus 160] [--booked 0.3] [--seed 42]

Demand: the busiest 7 days of the trace's GPU pods (creation_time), each staying until its deletion_time
(still running at the trace's end: until the week ends), shapes as ``allocations.placement.replay`` reads
them, on a seeded sample of the trace's nodes (vgpu sharing model, the traces' ladders) of about --gpus
GPUs, so that the week's demand contends for it. Nothing runs at the start.

Four runs of the same demand: bookings off/on × idle reclamation off/on.

- Bookings off: every arrival asks on the spot and is placed or refused (no queue), as the request service.
- Bookings on: a share (--booked, seeded) of the arrivals is booked 24 h ahead (or at the week's start).
  A booking is accepted if its window fits the future, as ``bookings.fit`` checks it: the window's whole
  load (desktops then still running until their departure, other accepted bookings overlapping it) and
  the booking replayed through the placement engine (``allocations.placement.whatif.replay``). A booking
  that does not fit is moved later, an hour at a time, up to 12 hours (the booker picks the next free
  slot); else it is refused. On-demand arrivals are refused when they would take capacity an accepted
  booking starting before they end needs (the portal's hold). At its start a booking is placed; if the
  real fleet cannot take it then (the check is per window, the fleet's packing is not), it is refused.
- Idle model (seeded, the same draw in every run): 40 % of desktops go idle at a uniformly drawn point
  between 20 % and 80 % of their lifetime and stay idle until they end. With reclamation on, a desktop idle
  for --idle-limit minutes is released then (suspended desktops that release their capacity count the same).

Figures: requests and GPU-hours served (a placed desktop's share of its board(s) × hours held) and
refused (the share × the hours it asked for), GPU-hours used (held while not idle), reclaimed, and for
bookings on what happened to the bookings.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import os
import random
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
import django  # noqa: E402

django.setup()  # whatif's module reads the models (its replay itself is pure)

from allocations.placement import engine  # noqa: E402
from allocations.placement.engine.ladders import trace_ladder  # noqa: E402
from allocations.placement.replay import load_nodes, load_pods  # noqa: E402
from allocations.placement.whatif import Arrival, HostShape, build_cluster, replay  # noqa: E402

TRACES = os.environ.get("PORTAL_TRACES", "/work/shared/traces/openb")
WEEK = 7 * 86400
LEAD = 86400  # bookings are made a day ahead
SHIFT_STEP, SHIFT_MAX = 3600, 12
IDLE_SHARE, IDLE_FROM, IDLE_TO = 0.4, 0.2, 0.8


@dataclass
class Job:
    k: int
    at: float
    duration: float
    req: engine.Request
    booked: bool
    idle_at: float | None  # seconds after its start when it goes idle (None: never)


def load_week(pods_name: str, seed: int, booked_share: float) -> list[Job]:
    path = f"{TRACES}/openb_pod_list_{pods_name}.csv"
    pods = load_pods(path)  # the replay's shapes, in file order
    with open(path, newline="") as f:
        times = [(r["creation_time"], r["deletion_time"]) for r in csv.DictReader(f)]
    rows = [
        (int(c), int(d) if d else None, req) for (_, req), (c, d) in zip(pods, times, strict=True) if c and req.num_gpu
    ]
    starts = sorted(c for c, _, _ in rows)
    best, lo = (0, 0), 0
    for hi, t in enumerate(starts):  # the busiest 7 days
        while t - starts[lo] >= WEEK:
            lo += 1
        best = max(best, (hi - lo + 1, starts[lo]))
    t0 = best[1]
    rng = random.Random(seed)
    jobs = []
    for c, d, req in sorted(rows, key=lambda r: r[0]):
        if not t0 <= c < t0 + WEEK:
            continue
        at = float(c - t0)
        duration = max(60.0, min(float((d or t0 + WEEK) - c), WEEK - at))
        booked = rng.random() < booked_share
        idle_at = rng.uniform(IDLE_FROM, IDLE_TO) * duration if rng.random() < IDLE_SHARE else None
        jobs.append(Job(len(jobs), at, duration, req, booked, idle_at))
    return jobs


def sample_fleet(gpus: int, seed: int) -> list[HostShape]:
    nodes = load_nodes(f"{TRACES}/openb_node_list_gpu_node.csv")
    random.Random(seed).shuffle(nodes)
    out, total = [], 0
    for n in nodes:
        if total >= gpus:
            break
        out.append(HostShape(n.name, n.cpu_milli, n.memory_mib, tuple((n.gpu_model, "any") for _ in n.gpus)))
        total += len(n.gpus)
    return out


def share(cluster: engine.Cluster, req: engine.Request, d: engine.Decision) -> float:
    if req.is_share:
        return cluster.lad[d.node_index].size[d.profile_key] / cluster.fb[d.node_index]
    return float(req.num_gpu)


def nominal(req: engine.Request) -> float:
    return req.gpu_request_milli / engine.MILLI


class Run:
    """One replay of the week: an event loop over the engine's cluster, with holds for bookings."""

    def __init__(self, hosts, ladders, jobs, *, bookings: bool, reclaim: bool, idle_limit: float, policy: str):
        self.hosts, self.ladders, self.jobs = hosts, ladders, jobs
        self.bookings, self.reclaim, self.idle_limit, self.policy = bookings, reclaim, idle_limit, policy
        self.cluster, _ = build_cluster(hosts, ladders, 1)
        self.pol = engine.make_policy(policy, self.cluster, seed=0, typical=engine.policy_typical(policy, []))
        self.running: dict[int, tuple] = {}  # k → (req, decision, planned end)
        self.accepted: dict[int, tuple] = {}  # k → (start, end, req) of bookings not started yet
        self.f = dict.fromkeys(
            [
                "requests", "served", "refused", "gpuh_served", "gpuh_used", "gpuh_refused", "gpuh_reclaimed",
                "reclaimed", "booked", "booked_as_asked", "booked_shifted", "booked_refused", "booked_failed_at_start",
                "refused_for_holds",
            ],
            0,
        )  # fmt: skip

    def fits_window(self, start, end, req, extra=()) -> bool:
        """``bookings.fit``'s check: the window's whole load, then the booking, through the engine."""
        span = end - start
        demand = [Arrival(0.0, "load", r, span) for r, _, until in self.running.values() if until > start]
        demand += [Arrival(0.0, "load", r, span) for r in extra]
        demand += [Arrival(0.0, "load", r, span) for s, e, r in self.accepted.values() if s < end and e > start]
        demand.append(Arrival(0.0, "mine", req, span))
        out = replay(self.hosts, demand, self.ladders, policy="first-fit", vcpu_milli=1, horizon_s=span)
        return out.by_template["mine"]["refused"] == 0

    def breaks_a_hold(self, now, until, req) -> bool:
        for k, (s, e, r) in list(self.accepted.items()):
            if s < until:
                saved = self.accepted.pop(k)
                try:
                    ok_before = self.fits_window(s, e, r)
                    ok_after = self.fits_window(s, e, r, extra=[req])
                finally:
                    self.accepted[k] = saved
                if ok_before and not ok_after:
                    return True
        return False

    def end_of(self, j: Job, start: float) -> tuple[float, bool]:
        if self.reclaim and j.idle_at is not None and j.idle_at + self.idle_limit < j.duration:
            return start + j.idle_at + self.idle_limit, True
        return start + j.duration, False

    def run(self) -> dict:
        events = self.events = []  # (time, order, kind, k, start)
        for j in self.jobs:
            if self.bookings and j.booked:
                heapq.heappush(events, (max(0.0, j.at - LEAD), 0, "book", j.k, j.at))
            else:
                heapq.heappush(events, (j.at, 2, "arrive", j.k, j.at))
        while events:
            now, _, kind, k, start = heapq.heappop(events)
            j = self.jobs[k]
            if kind == "leave":
                req, d, _ = self.running.pop(k)
                self.cluster.release(req, d)
            elif kind == "book":
                self.f["booked"] += 1
                for step in range(SHIFT_MAX + 1):
                    s = start + step * SHIFT_STEP
                    if self.fits_window(s, s + j.duration, j.req):
                        self.accepted[k] = (s, s + j.duration, j.req)
                        self.f["booked_as_asked" if step == 0 else "booked_shifted"] += 1
                        heapq.heappush(events, (s, 1, "arrive", k, s))
                        break
                else:
                    self.f["booked_refused"] += 1
                    self.refuse(j)
            else:
                booked = self.accepted.pop(k, None) is not None
                self.arrive(j, now, booked)
        return self.f

    def refuse(self, j: Job) -> None:
        self.f["requests"] += 1
        self.f["refused"] += 1
        self.f["gpuh_refused"] += nominal(j.req) * j.duration / 3600

    def arrive(self, j: Job, now: float, booked: bool) -> None:
        d = self.pol.place(j.req)
        if d is not None and not booked and self.bookings and self.breaks_a_hold(now, now + j.duration, j.req):
            self.f["refused_for_holds"] += 1
            d = None
        if d is None:
            if booked:
                self.f["booked_failed_at_start"] += 1
            self.refuse(j)
            return
        self.cluster.apply(j.req, d)
        end, reclaimed = self.end_of(j, now)
        end = min(end, WEEK)
        self.running[j.k] = (j.req, d, end)
        heapq.heappush(self.events, (end, -1, "leave", j.k, now))  # departures first at the same instant
        held = share(self.cluster, j.req, d) * (end - now) / 3600
        busy = (j.idle_at if j.idle_at is not None else j.duration) / 3600
        self.f["requests"] += 1
        self.f["served"] += 1
        self.f["gpuh_served"] += held
        self.f["gpuh_used"] += share(self.cluster, j.req, d) * min(busy, (end - now) / 3600)
        if reclaimed:
            self.f["reclaimed"] += 1
            self.f["gpuh_reclaimed"] += share(self.cluster, j.req, d) * (now + j.duration - end) / 3600


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", default="default")
    parser.add_argument("--gpus", type=int, default=160, help="GPUs of the sampled fleet (about)")
    parser.add_argument("--booked", type=float, default=0.3, help="share of arrivals booked ahead")
    parser.add_argument("--idle-limit", type=float, default=30, help="minutes idle before reclaimed")
    parser.add_argument("--policy", default="ours")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    jobs = load_week(args.pods, args.seed, args.booked)
    hosts = sample_fleet(args.gpus, args.seed)
    ladders = {m: trace_ladder(m) for h in hosts for m, _ in h.gpus}
    gpus = sum(len(h.gpus) for h in hosts)
    demand = sum(nominal(j.req) * j.duration for j in jobs) / 3600
    print(
        f"week: {len(jobs)} GPU arrivals ({sum(j.booked for j in jobs)} marked booked, {args.booked:.0%}), "
        f"{demand:,.0f} GPU-hours asked; fleet: {len(hosts)} hosts, {gpus} GPUs ({gpus * 168:,} GPU-hours); "
        f"policy {args.policy}; idle model: {IDLE_SHARE:.0%} of desktops idle from a uniform "
        f"{IDLE_FROM:.0%}-{IDLE_TO:.0%} of their lifetime to their end, reclaimed after {args.idle_limit:g} min"
    )
    results = {}
    for bookings in (False, True):
        for reclaim in (False, True):
            started = time.perf_counter()
            run = Run(
                hosts, ladders, jobs, bookings=bookings, reclaim=reclaim, idle_limit=args.idle_limit * 60,
                policy=args.policy,
            )  # fmt: skip
            f = run.run()
            f["elapsed_s"] = round(time.perf_counter() - started, 1)
            key = f"bookings {'on' if bookings else 'off'}, reclaim {'on' if reclaim else 'off'}"
            results[key] = {k: round(v, 1) if isinstance(v, float) else v for k, v in f.items()}
    rows = [
        "requests", "served", "refused", "gpuh_served", "gpuh_refused", "gpuh_used", "reclaimed", "gpuh_reclaimed",
        "booked", "booked_as_asked", "booked_shifted", "booked_refused", "booked_failed_at_start",
        "refused_for_holds", "elapsed_s",
    ]  # fmt: skip
    names = list(results)
    print(f"{'':24}" + "".join(f"{n:>28}" for n in names))
    for r in rows:
        print(f"{r:24}" + "".join(f"{results[n][r]:>28}" for n in names))
    print(json.dumps({"args": vars(args), "gpus": gpus, "arrivals": len(jobs), "results": results}))


if __name__ == "__main__":
    main()
