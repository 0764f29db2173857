"""Replay an openb trace through the placement engine (protocol of shared/traces/README.md).

    python replay.py NODES PODS --policy P --model fractional|vgpu --seeds 42-51 \
        --out placements.jsonl

- Arrival order: pods in file order, shuffled by random.Random(seed); then copies of pods drawn
  uniformly at random from the trace (same generator) are appended until the GPU request of all
  arrivals reaches 130% of the cluster's GPUs.
- Each pod is placed or rejected once, on the spot; nothing departs.
- Allocation ratio = GPU request of placed pods / cluster GPUs, read when arrivals reach 100% and
  at the end (130%).  vgpu: stranded = 1 - committed capacity (each vGPU at its profile's share)
  / cluster GPUs at the end.
Prints one JSON summary (per seed and mean over seeds) as the last line of stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time

from allocations.placement import engine
from allocations.placement.engine import Cluster, GPUState, NodeState, Request, make_policy


def parse_models(spec: str) -> frozenset | None:
    """The trace's ``gpu_spec`` column (``A|B``, or empty for any model) as a request's allowed models."""
    parts = frozenset(p for p in (spec or "").split("|") if p)
    return parts or None


def load_nodes(path: str) -> list[NodeState]:
    nodes = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            n = int(r["gpu"])
            nodes.append(
                NodeState(
                    r["sn"], int(r["cpu_milli"]), int(r["memory_mib"]), r["model"], [GPUState() for _ in range(n)]
                )
            )
    return nodes


def load_pods(path: str) -> list[tuple[str, Request]]:
    pods = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            num = int(r["num_gpu"])
            milli = int(r["gpu_milli"])
            if num == 0:
                milli = 0
            pods.append(
                (
                    r["name"],
                    Request(int(r["cpu_milli"]), int(r["memory_mib"]), num, milli, parse_models(r.get("gpu_spec", ""))),
                )
            )
    return pods


def arrivals(pods: list, total_gpus: int, seed: int, inflation: float = 1.3) -> list:
    """The protocol's arrival order for one seed."""
    rng = random.Random(seed)
    order = list(pods)
    rng.shuffle(order)
    cap = total_gpus * engine.MILLI
    total = sum(p[1].gpu_request_milli for p in order)
    num, den = round(inflation * 100), 100
    while total * den < num * cap:
        p = rng.choice(pods)
        order.append(p)
        total += p[1].gpu_request_milli
    return order


def parse_seeds(s: str) -> list[int]:
    out = []
    for part in s.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def run_seed(
    nodes_path: str,
    pods: list,
    policy: str,
    model: str,
    seed: int,
    typical,
    out=None,
    limit: int | None = None,
) -> dict:
    cluster = Cluster(load_nodes(nodes_path), model)
    pol = make_policy(policy, cluster, seed=seed, typical=typical)
    order = arrivals(pods, cluster.total_gpus, seed)
    if limit is not None:
        order = order[:limit]
    cap = cluster.total_gpus * engine.MILLI
    arrived = placed = 0
    ratio100 = None
    t_place = 0.0
    n_placed = 0
    perf = time.perf_counter
    lines = []
    for seq, (name, req) in enumerate(order):
        t0 = perf()
        d = pol.place(req)
        if d is not None:
            cluster.apply(req, d)
        t_place += perf() - t0
        arrived += req.gpu_request_milli
        if d is not None:
            placed += req.gpu_request_milli
            n_placed += 1
        if ratio100 is None and arrived >= cap:
            ratio100 = placed / cap
        if out is not None:
            lines.append(
                json.dumps(
                    {
                        "seed": seed,
                        "seq": seq,
                        "pod": name,
                        "host": d.node_name if d else None,
                        "gpus": list(d.gpus) if d else [],
                        "milli": d.milli if d else 0,
                        "profile": d.profile if d else None,
                    }
                )
            )
    if out is not None:
        out.write("\n".join(lines) + "\n")
    ratio130 = placed / cap
    res = {
        "seed": seed,
        "arrivals": len(order),
        "placed": n_placed,
        "alloc_100": round(ratio100, 6) if ratio100 is not None else None,
        "alloc_130": round(ratio130, 6),
        "unalloc_100": round(1 - ratio100, 6) if ratio100 is not None else None,
        "unalloc_130": round(1 - ratio130, 6),
        "decisions_per_s": round(len(order) / t_place, 1) if t_place > 0 else None,
    }
    if model == "vgpu":
        res["stranded_130"] = round(1 - cluster.committed_milli() / cap, 6)
    return res


def summarize(results: list[dict], model: str) -> dict:
    keys = ["alloc_100", "alloc_130", "unalloc_100", "unalloc_130", "decisions_per_s"]
    if model == "vgpu":
        keys.append("stranded_130")
    mean = {}
    for k in keys:
        vals = [r[k] for r in results if r.get(k) is not None]
        mean[k] = round(sum(vals) / len(vals), 6) if vals else None
    return mean


def run(
    nodes: str,
    pods_path: str,
    *,
    policy: str = "ours",
    model: str = "fractional",
    seeds: str = "42-51",
    out_path: str | None = None,
    limit: int | None = None,
) -> dict:
    """Replay every seed; per-seed lines go to stderr, the summary is printed last and returned."""
    pods = load_pods(pods_path)
    typical = engine.policy_typical(policy, [r for _, r in pods])
    seed_list = parse_seeds(seeds)
    out = open(out_path, "w") if out_path else None
    results = []
    t0 = time.time()
    try:
        for seed in seed_list:
            r = run_seed(nodes, pods, policy, model, seed, typical, out, limit)
            results.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    finally:
        if out:
            out.close()
    summary = {
        "nodes": nodes,
        "pods": pods_path,
        "policy": policy,
        "model": model,
        "seeds": seed_list,
        "per_seed": results,
        "mean": summarize(results, model),
        "wall_s": round(time.time() - t0, 1),
    }
    print(json.dumps(summary))
    return summary


def add_arguments(parser) -> None:
    """The replay's arguments, for this script and for ``manage.py replay_trace``."""
    parser.add_argument("nodes")
    parser.add_argument("pods")
    parser.add_argument("--policy", default="ours", choices=sorted(engine.POLICIES))
    parser.add_argument("--model", default="fractional", choices=["fractional", "vgpu"])
    parser.add_argument("--seeds", default="42-51")
    parser.add_argument("--out", default=None, help="placement JSONL file")
    parser.add_argument("--limit", type=int, default=None, help="only the first N arrivals of each seed")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(ap)
    args = ap.parse_args(argv)
    return run(
        args.nodes,
        args.pods,
        policy=args.policy,
        model=args.model,
        seeds=args.seeds,
        out_path=args.out,
        limit=args.limit,
    )


if __name__ == "__main__":
    main()
