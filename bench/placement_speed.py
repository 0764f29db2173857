"""Placement speed, side by side: decisions/s of ours, FGD and best-fit on every shared openb trace and
both sharing models, in-process through the replay (``allocations.placement.replay.run_seed``, as
``manage.py replay_trace`` runs it: the time of ``place`` + ``apply`` per arrival, one seed).

    .venv/bin/python bench/placement_speed.py [--traces default gpushare40 ...] [--models fractional vgpu]
        [--repeat 3] [--seed 42] [--limit N]
    .venv/bin/python bench/placement_speed.py --profile [--traces default] [--models vgpu] [--top 25]
    .venv/bin/python bench/placement_speed.py --before-src DIR   # adds "ours" of another checkout

``--before-src DIR`` (a tree holding another version's ``allocations/placement``, e.g. from
``git archive HEAD allocations/__init__.py allocations/placement | tar -x -C DIR``) adds that
version's ours as a fourth policy, run in a subprocess in the same interleaved loop (its own
timing of place + apply, as here), so before and after compare within one run.

Policies are interleaved within each repeat (the order rotates from one repeat to the next), so a
noisy, shared machine slows them alike; each figure is the median over the repeats, and the ratio
ours / fgd is taken from the medians of the same run. Also prints unallocated (at 130%) and, in the
vgpu model, stranded capacity, so a speed-up that changed packing shows. No database is needed.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from allocations.placement import engine, replay  # noqa: E402

TRACE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "traces", "openb")
TRACES = ("default", "gpushare40", "gpuspec10", "multigpu20")
POLICIES = ("ours", "fgd", "best-fit")
MODELS = ("fractional", "vgpu")


def paths(trace_dir: str, trace: str) -> tuple[str, str]:
    return (
        os.path.join(trace_dir, "openb_node_list_gpu_node.csv"),
        os.path.join(trace_dir, f"openb_pod_list_{trace}.csv"),
    )


BEFORE = "ours@before"
BEFORE_SCRIPT = """
import json, sys
from allocations.placement import engine, replay
nodes, pods_path, model, seed, limit = sys.argv[1:6]
pods = replay.load_pods(pods_path)
typical = engine.policy_typical("ours", [r for _, r in pods])
print(json.dumps(replay.run_seed(nodes, pods, "ours", model, int(seed), typical, None, int(limit) or None)))
"""


def one_run(nodes: str, pods: list, typical: dict, policy: str, model: str, seed: int, limit: int | None) -> dict:
    return replay.run_seed(nodes, pods, policy, model, seed, typical[policy], None, limit)


def lockstep(nodes: str, pods: list, typical: dict, model: str, seed: int, limit: int | None) -> dict:
    """ours, FGD and best-fit replaying the same arrivals side by side: each arrival is decided by every
    policy (on its own cluster, the order rotating per arrival) before the next, and each decision (place +
    apply, as ``replay.run_seed`` times it) is timed on its own, so a burst of load from other processes
    falls on all of them alike."""
    perf = time.perf_counter
    runs = []
    for policy in POLICIES:
        cluster = engine.Cluster(replay.load_nodes(nodes), model)
        pol = engine.make_policy(policy, cluster, seed=seed, typical=typical[policy])
        runs.append([policy, cluster, pol, 0.0, 0])
    order = replay.arrivals(pods, runs[0][1].total_gpus, seed)[:limit]
    for seq, (_name, req) in enumerate(order):
        k = seq % len(runs)
        for run in runs[k:] + runs[:k]:
            _policy, cluster, pol = run[0], run[1], run[2]
            t0 = perf()
            d = pol.place(req)
            if d is not None:
                cluster.apply(req, d)
            run[3] += perf() - t0
            if d is not None:
                run[4] += req.gpu_request_milli
    out = {}
    for policy, cluster, _pol, spent, placed in runs:
        cap = cluster.total_gpus * engine.MILLI
        out[policy] = {"decisions_per_s": len(order) / spent, "unalloc_130": round(1 - placed / cap, 6)}
        if model == "vgpu":
            out[policy]["stranded_130"] = round(1 - cluster.committed_milli() / cap, 6)
    return out


def before_run(src: str, nodes: str, pods_path: str, model: str, seed: int, limit: int | None) -> dict:
    """The other checkout's ours, in a subprocess that imports only that tree's ``allocations``."""
    out = subprocess.run(
        [sys.executable, "-c", BEFORE_SCRIPT, nodes, pods_path, model, str(seed), str(limit or 0)],
        cwd=src,
        env={**os.environ, "PYTHONPATH": src},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(args) -> None:
    print(
        f"seed {args.seed}, {args.repeat} repeat(s), "
        + ("ours/fgd/best-fit in lockstep per arrival" if args.lockstep else "policies interleaved")
        + ", medians"
        + (f", first {args.limit} arrivals" if args.limit else "")
    )
    policies = POLICIES + ((BEFORE,) if args.before_src else ())
    header = (
        f"{'trace':<11} {'model':<10} {'ours/s':>8} {'fgd/s':>8} {'best-fit/s':>10} {'ours/fgd':>8}  "
        f"{'unalloc ours/fgd/bf %':>24}  {'stranded ours/fgd/bf %':>24}"
        + (f"  {'before/s':>8} {'before/fgd':>10} {'same packing':>12}" if args.before_src else "")
    )
    print(header)
    print("-" * len(header))
    worst = None
    for trace in args.traces:
        nodes, pods_path = paths(args.trace_dir, trace)
        pods = replay.load_pods(pods_path)
        demand = [r for _, r in pods]
        typical = {p: engine.policy_typical(p, demand) for p in POLICIES}
        for model in args.models:
            rates: dict[str, list[float]] = {p: [] for p in policies}
            last: dict[str, dict] = {}
            for rep in range(args.repeat):
                if args.lockstep:
                    last.update(lockstep(nodes, pods, typical, model, args.seed, args.limit))
                    for policy in POLICIES:
                        rates[policy].append(last[policy]["decisions_per_s"])
                order = policies[rep % len(policies) :] + policies[: rep % len(policies)]
                for policy in order:
                    if args.lockstep and policy != BEFORE:
                        continue
                    if policy == BEFORE:
                        r = before_run(args.before_src, nodes, pods_path, model, args.seed, args.limit)
                    else:
                        r = one_run(nodes, pods, typical, policy, model, args.seed, args.limit)
                    rates[policy].append(r["decisions_per_s"])
                    last[policy] = r
            med = {p: statistics.median(v) for p, v in rates.items()}
            ratio = med["ours"] / med["fgd"]
            worst = ratio if worst is None else min(worst, ratio)
            unalloc = "/".join(f"{100 * last[p]['unalloc_130']:.2f}" for p in POLICIES)
            stranded = "/".join(f"{100 * last[p]['stranded_130']:.2f}" for p in POLICIES) if model == "vgpu" else "-"
            extra = ""
            if args.before_src:
                same = all(last[BEFORE][k] == last["ours"][k] for k in last["ours"] if k != "decisions_per_s")
                extra = f"  {med[BEFORE]:>8.0f} {med[BEFORE] / med['fgd']:>10.2f} {'yes' if same else 'NO':>12}"
            print(
                f"{trace:<11} {model:<10} {med['ours']:>8.0f} {med['fgd']:>8.0f} {med['best-fit']:>10.0f} "
                f"{ratio:>8.2f}  {unalloc:>24}  {stranded:>24}{extra}",
                flush=True,
            )
    print(f"lowest ours/fgd: {worst:.2f}")


def profile(args) -> None:
    trace, model = args.traces[0], args.models[0]
    nodes, pods_path = paths(args.trace_dir, trace)
    pods = replay.load_pods(pods_path)
    typical = {"ours": engine.policy_typical("ours", [r for _, r in pods])}
    prof = cProfile.Profile()
    prof.enable()
    r = one_run(nodes, pods, typical, "ours", model, args.seed, args.limit)
    prof.disable()
    print(f"ours, {trace}, {model}, seed {args.seed}: {r['decisions_per_s']} decisions/s (under the profiler)")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats(args.sort).print_stats(args.top)
    print(out.getvalue())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--traces", nargs="+", default=list(TRACES), choices=TRACES)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--limit", type=int, default=None, help="only the first N arrivals")
    ap.add_argument("--trace-dir", default=os.path.normpath(TRACE_DIR))
    ap.add_argument(
        "--lockstep",
        action="store_true",
        help="ours, fgd and best-fit decide each arrival in turn, each decision timed (fairest on a busy machine)",
    )
    ap.add_argument("--before-src", default=None, help="another checkout's tree: its ours as a fourth policy")
    ap.add_argument("--profile", action="store_true", help="cProfile ours on the first trace and model")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    args = ap.parse_args(argv)
    if args.profile:
        profile(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()
