"""Tests for the placement engine and the trace replay.

Run: .venv/bin/pytest -q allocations/tests/test_placement_engine.py
"""

import json
import os
import random
from pathlib import Path

import pytest

from allocations.placement import replay
from allocations.placement.engine import (
    Cluster,
    Decision,
    GPUState,
    NodeState,
    Request,
    ladder_for,
    make_policy,
    policy_typical,
)
from allocations.placement.engine.state import EMPTY_VGPU, FREE_WHOLE, WHOLE
from allocations.placement.engine.typical import typical_pods

TRACES = str(Path(__file__).resolve().parents[3] / "shared" / "traces" / "openb")
NODES = os.path.join(TRACES, "openb_node_list_gpu_node.csv")
PODS = os.path.join(TRACES, "openb_pod_list_default.csv")
ALL_POLICIES = ["first-fit", "best-fit", "random", "fgd", "ours"]
have_traces = pytest.mark.skipif(not os.path.exists(PODS), reason="openb trace not available")


def node(name, cpu=32000, mem=131072, model="T4", ngpu=2):
    return NodeState(name, cpu, mem, model, [GPUState() for _ in range(ngpu)])


def small_typical():
    reqs = (
        [Request(4000, 8192, 1, 500)] * 5
        + [Request(8000, 16384, 1, 1000)] * 4
        + [Request(2000, 4096, 0, 0)] * 2
        + [Request(16000, 32768, 2, 1000)]
    )
    return typical_pods(reqs)


# ------------------------------------------------------------------------------------------
# Profiles
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model,milli,size",
    [
        ("T4", 470, 8),
        ("T4", 500, 8),
        ("T4", 501, 16),
        ("T4", 810, 16),
        ("T4", 230, 4),
        ("T4", 110, 2),
        ("T4", 50, 1),
        ("G2", 320, 8),
        ("V100M32", 470, 16),
        ("V100M32", 50, 2),
        ("V100M32", 810, 32),
        ("A10", 320, 8),
        ("A10", 160, 4),
        ("A10", 470, 12),
        ("A10", 230, 6),
    ],
)
def test_profile_is_smallest_that_holds_the_share(model, milli, size):
    ladder = ladder_for(model)
    assert ladder.choose(milli) == size
    fb, sizes = ladder.fb, sorted(ladder.size.values())
    assert size * 1000 >= milli * fb
    assert all(s * 1000 < milli * fb for s in sizes if s < size)


# ------------------------------------------------------------------------------------------
# Constraints: a placement that breaks one is impossible
# ------------------------------------------------------------------------------------------


def test_cpu_memory_and_model_are_enforced():
    c = Cluster([node("a", cpu=4000, mem=8192, model="T4")], "fractional")
    with pytest.raises(ValueError, match="CPU"):
        c.apply(Request(5000, 1024, 1, 500), Decision(0, "a", (0,), 500))
    with pytest.raises(ValueError, match="memory"):
        c.apply(Request(1000, 9000, 1, 500), Decision(0, "a", (0,), 500))
    with pytest.raises(ValueError, match="model"):
        c.apply(Request(1000, 1024, 1, 500, frozenset({"V100M16"})), Decision(0, "a", (0,), 500))
    c.apply(Request(1000, 1024, 1, 500, frozenset({"T4", "V100M16"})), Decision(0, "a", (0,), 500))


def test_fractional_share_cannot_exceed_gpu():
    c = Cluster([node("a")], "fractional")
    c.apply(Request(1000, 1024, 1, 600), Decision(0, "a", (0,), 600))
    with pytest.raises(ValueError, match="exceeds"):
        c.apply(Request(1000, 1024, 1, 500), Decision(0, "a", (0,), 500))
    c.apply(Request(1000, 1024, 1, 400), Decision(0, "a", (0,), 400))  # fills it exactly
    assert c.left[0][0] == 0


def test_whole_and_multi_gpu_need_fully_free_gpus_of_one_host():
    c = Cluster([node("a", ngpu=4)], "fractional")
    c.apply(Request(1000, 1024, 1, 100), Decision(0, "a", (1,), 100))
    with pytest.raises(ValueError, match="fully free"):
        c.apply(Request(1000, 1024, 2, 1000), Decision(0, "a", (0, 1), 1000))
    with pytest.raises(ValueError, match="number of GPUs"):
        c.apply(Request(1000, 1024, 2, 1000), Decision(0, "a", (0,), 1000))
    with pytest.raises(ValueError, match="number of GPUs"):
        c.apply(Request(1000, 1024, 2, 1000), Decision(0, "a", (0, 0), 1000))
    c.apply(Request(1000, 1024, 2, 1000), Decision(0, "a", (0, 2), 1000))
    # a share cannot go onto a GPU taken whole
    with pytest.raises(ValueError):
        c.apply(Request(1000, 1024, 1, 100), Decision(0, "a", (0,), 100))


def test_vgpu_equal_size_mode():
    c = Cluster([node("a", model="T4", ngpu=2)], "vgpu")
    r8 = Request(1000, 1024, 1, 470)  # T4-8Q
    r4 = Request(1000, 1024, 1, 230)  # T4-4Q
    d8 = Decision(0, "a", (0,), 470, "T4-8Q", 8)
    c.apply(r8, d8)
    # another profile type on the same GPU is impossible
    with pytest.raises(ValueError, match="another profile"):
        c.apply(r4, Decision(0, "a", (0,), 230, "T4-4Q", 4))
    # the profile is fixed by the board and the share
    with pytest.raises(ValueError, match="wrong profile"):
        c.apply(r4, Decision(0, "a", (1,), 230, "T4-8Q", 8))
    # an empty GPU takes any type
    c.apply(r4, Decision(0, "a", (1,), 230, "T4-4Q", 4))
    # at most framebuffer / profile size instances: 16/8 = 2
    c.apply(r8, d8)
    with pytest.raises(ValueError, match="no free instance"):
        c.apply(r8, d8)
    assert c.used[0][0] == 2 and c.prof[0][0] == 8
    # a GPU hosting vGPUs cannot be passed through
    with pytest.raises(ValueError, match="fully free"):
        c.apply(Request(1000, 1024, 1, 1000), Decision(0, "a", (1,), 1000))


def test_vgpu_passthrough_gpu_hosts_no_vgpu_and_release_resets_type():
    c = Cluster([node("a", model="V100M32", ngpu=1)], "vgpu")
    whole = Request(1000, 1024, 1, 1000)
    d = Decision(0, "a", (0,), 1000)
    c.apply(whole, d)
    with pytest.raises(ValueError):
        c.apply(Request(1000, 1024, 1, 50), Decision(0, "a", (0,), 50, "V100M32-2Q", 2))
    c.release(whole, d)
    share = Request(1000, 1024, 1, 50)
    ds = Decision(0, "a", (0,), 50, "V100M32-2Q", 2)
    c.apply(share, ds)
    assert c.prof[0][0] == 2 and c.left[0][0] == 937  # 15 of 16 2Q slots free (floor)
    assert c.committed_milli() == 62.5
    c.release(share, ds)
    assert c.prof[0][0] == 0 and c.left[0][0] == 1000


def random_cluster(rng, n=12):
    models = ["T4", "G2", "V100M32", "A10", "P100"]
    return [
        NodeState(
            f"n{i:02d}",
            rng.choice([8000, 16000, 32000, 96000]),
            rng.choice([32768, 131072, 393216]),
            rng.choice(models),
            [GPUState() for _ in range(rng.choice([1, 2, 4, 8]))],
        )
        for i in range(n)
    ]


def random_request(rng):
    kind = rng.random()
    cpu = rng.choice([1000, 3152, 4000, 8000, 11300, 24000])
    mem = rng.choice([2048, 8192, 32768, 65536])
    models = rng.choice([None, None, None, frozenset({"T4"}), frozenset({"G2", "V100M32"})])
    if kind < 0.15:
        return Request(cpu, mem, 0, 0, models)
    if kind < 0.6:
        return Request(cpu, mem, 1, rng.choice([50, 110, 160, 230, 320, 470, 650, 810]), models)
    return Request(cpu, mem, rng.choice([1, 1, 1, 2, 4, 8]), 1000, models)


def invariants(c: Cluster):
    for i in range(c.n):
        assert 0 <= c.cpu_free[i] <= c.cpu_cap[i]
        assert 0 <= c.mem_free[i] <= c.mem_cap[i]
        for g in range(c.ngpu[i]):
            assert 0 <= c.left[i][g] <= 1000
            if not c.vgpu:
                continue
            p = c.prof[i][g]
            if p > 0:
                assert 1 <= c.used[i][g] <= c.lad[i].maxi[p]
                assert c.home[i][g] != FREE_WHOLE  # a whole-only GPU never runs a profile
            elif p == WHOLE:
                assert c.used[i][g] == 1 and c.home[i][g] != EMPTY_VGPU  # a vGPU-only GPU is never whole
            else:
                assert p == c.home[i][g] and c.used[i][g] == 0


@pytest.mark.parametrize("model", ["fractional", "vgpu"])
@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_policies_never_break_a_rule_and_reject_only_when_nothing_fits(policy, model):
    rng = random.Random(hash((policy, model)) & 0xFFFF)
    c = Cluster(random_cluster(rng), model)
    pol = make_policy(policy, c, seed=7, typical=small_typical())
    for _ in range(400):
        req = random_request(rng)
        d = pol.place(req)
        if d is None:
            assert not any(c.node_fits(i, req) for i in range(c.n))
            continue
        c.check(req, d)  # raises on any broken rule
        if req.models is not None:
            assert c.gmodel[d.node_index] in req.models
        c.apply(req, d)
        invariants(c)


def test_place_does_not_mutate():
    c = Cluster([node("a"), node("b")], "vgpu")
    pol = make_policy("ours", c, typical=small_typical())
    before = [c.node_state(i) for i in range(c.n)]
    for r in (Request(1000, 1024, 1, 470), Request(1000, 1024, 2, 1000), Request(1000, 1024, 0, 0)):
        assert pol.place(r) is not None
    assert [c.node_state(i) for i in range(c.n)] == before


# ------------------------------------------------------------------------------------------
# Tie-breaking
# ------------------------------------------------------------------------------------------


def identical_nodes(names):
    return [node(n, cpu=64000, mem=262144, model="G2", ngpu=8) for n in names]


def test_best_fit_ties_go_to_smallest_host_name():
    c = Cluster(identical_nodes(["node-c", "node-a", "node-b"]), "fractional")
    pol = make_policy("best-fit", c)
    d = pol.place(Request(4000, 1024, 1, 300))
    assert d.node_name == "node-a"


def test_best_fit_score_and_gpu_choice():
    nodes = identical_nodes(["x", "y"])
    c = Cluster(nodes, "fractional")
    c.apply(Request(1000, 1024, 1, 600), Decision(1, "y", (3,), 600))
    c.apply(Request(1000, 1024, 1, 300), Decision(1, "y", (5,), 300))
    pol = make_policy("best-fit", c)
    d = pol.place(Request(1000, 1024, 1, 300))
    # y has less leftover; inside y the GPU with the least room that fits (index 3: 400 left)
    assert (d.node_name, d.gpus) == ("y", (3,))


def test_first_fit_takes_first_host_by_name():
    c = Cluster(identical_nodes(["b", "a", "c"]), "fractional")
    d = make_policy("first-fit", c).place(Request(1000, 1024, 2, 1000))
    assert d.node_name == "a" and d.gpus == (0, 1)


def test_fgd_ties_follow_a_per_seed_random_node_order():
    names = [f"node-{i:02d}" for i in range(20)]
    picks = set()
    for seed in range(42, 52):
        c = Cluster(identical_nodes(names), "fractional")
        d = make_policy("fgd", c, seed=seed, typical=small_typical()).place(Request(4000, 1024, 1, 500))
        perm = list(range(20))
        random.Random(seed).shuffle(perm)
        assert d.node_index == perm[0]
        # same seed, same choice
        c2 = Cluster(identical_nodes(names), "fractional")
        d2 = make_policy("fgd", c2, seed=seed, typical=small_typical()).place(Request(4000, 1024, 1, 500))
        assert d2 == d
        picks.add(d.node_name)
    assert len(picks) > 1


def test_ours_is_deterministic_and_breaks_ties_by_leftover_then_name():
    c = Cluster(identical_nodes(["q", "p", "r"]), "fractional")
    pol = make_policy("ours", c, seed=1, typical=small_typical())
    d = pol.place(Request(4000, 1024, 1, 500))
    assert d.node_name == "p"
    assert make_policy("ours", c, seed=99, typical=small_typical()).place(Request(4000, 1024, 1, 500)) == d


def test_vgpu_prefers_gpu_already_running_the_profile():
    c = Cluster(identical_nodes(["a", "b"]), "vgpu")
    r = Request(2000, 1024, 1, 470)
    c.apply(r, Decision(1, "b", (6,), 470, "G2-8Q", 8))
    for policy in ("best-fit", "fgd", "ours"):
        d = make_policy(policy, c, typical=small_typical()).place(r)
        assert (d.node_name, d.gpus, d.profile) == ("b", (6,), "G2-8Q"), policy


# ------------------------------------------------------------------------------------------
# Protocol
# ------------------------------------------------------------------------------------------


@have_traces
def test_arrival_order_for_seed_42():
    pods = replay.load_pods(PODS)
    order = replay.arrivals(pods, 6212, 42)
    names = [n for n, _ in order]
    # the trace shuffled by random.Random(42), then inflation copies from the same generator
    rng = random.Random(42)
    expect = list(pods)
    rng.shuffle(expect)
    assert names[: len(pods)] == [n for n, _ in expect]
    assert names[:5] == ["openb-pod-2665", "openb-pod-4979", "openb-pod-3253", "openb-pod-6040", "openb-pod-2143"]
    assert len(order) == 10772
    req = [r.gpu_request_milli for _, r in order]
    assert sum(req) >= 1.3 * 6212 * 1000 > sum(req[:-1])
    assert order[len(pods)][0] == rng.choice(pods)[0]


def test_gpu_request_definition():
    assert Request(1, 1, 1, 470).gpu_request_milli == 470
    assert Request(1, 1, 1, 1000).gpu_request_milli == 1000
    assert Request(1, 1, 4, 1000).gpu_request_milli == 4000
    assert Request(1, 1, 0, 0).gpu_request_milli == 0


@have_traces
def test_typical_pods_cover_95_percent():
    pods = replay.load_pods(PODS)
    typ = typical_pods([r for _, r in pods])
    assert abs(sum(t.freq for t in typ) - 1) < 1e-9
    assert any(t.num_gpu == 0 for t in typ)  # CPU-only included
    assert [t.freq for t in typ] == sorted((t.freq for t in typ), reverse=True)
    ours = policy_typical("ours", [r for _, r in pods])
    assert any(t.num_gpu == 8 for t in ours) and not any(t.num_gpu == 8 for t in typ)


@have_traces
@pytest.mark.parametrize("model", ["fractional", "vgpu"])
def test_replay_on_a_slice(tmp_path, capsys, model):
    out = tmp_path / "placements.jsonl"
    summary = replay.main(
        [NODES, PODS, "--policy", "ours", "--model", model, "--seeds", "42-43", "--limit", "400", "--out", str(out)]
    )
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last)["mean"] == summary["mean"]
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 800
    assert set(lines[0]) == {"seed", "seq", "pod", "host", "gpus", "milli", "profile"}
    # re-apply the placement file onto a fresh cluster: every line must be legal
    pods = dict(replay.load_pods(PODS))
    for seed in (42, 43):
        c = Cluster(replay.load_nodes(NODES), model)
        idx = {n: i for i, n in enumerate(c.names)}
        rows = [x for x in lines if x["seed"] == seed]
        assert [x["seq"] for x in rows] == list(range(400))
        placed = 0
        for x in rows:
            if x["host"] is None:
                continue
            r = pods[x["pod"]]
            size = int(x["profile"].rsplit("-", 1)[1][:-1]) if x["profile"] else 0
            d = Decision(idx[x["host"]], x["host"], tuple(x["gpus"]), x["milli"], x["profile"], size)
            c.apply(r, d)
            placed += r.gpu_request_milli
        per_seed = [p for p in summary["per_seed"] if p["seed"] == seed][0]
        assert abs(per_seed["alloc_130"] - placed / (c.total_gpus * 1000)) < 1e-6
        if model == "vgpu":
            assert abs(per_seed["stranded_130"] - (1 - c.committed_milli() / (c.total_gpus * 1000))) < 1e-6
            assert all(
                x["profile"] is None or x["profile"].startswith(c.gmodel[idx[x["host"]]]) for x in rows if x["host"]
            )


@have_traces
def test_replay_trace_command_writes_placements_and_prints_the_summary_last(tmp_path, capsys):
    from django.core.management import call_command

    out = tmp_path / "placements.jsonl"
    call_command(
        "replay_trace",
        NODES,
        PODS,
        "--policy",
        "ours",
        "--model",
        "vgpu",
        "--seeds",
        "42",
        "--limit",
        "300",
        "--out",
        str(out),
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["policy"] == "ours" and summary["seeds"] == [42]
    assert 0 < summary["mean"]["stranded_130"] < 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 300 and rows[0]["seq"] == 0 and rows[0]["seed"] == 42
    assert {"pod", "host", "gpus", "milli", "profile"} <= set(rows[0])


def test_replay_trace_command_refuses_unknown_policies():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="invalid choice: 'magic'"):
        call_command("replay_trace", NODES, PODS, "--policy", "magic")
