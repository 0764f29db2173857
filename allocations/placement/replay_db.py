"""The trace replay through the real request service (``replay_trace --through-db``).

One seed of the protocol in ``../shared/traces/README.md``, vgpu model, but every arrival is a
``request_desktop`` call on the database: the trace's nodes are Host rows and its GPUs GPU rows in
flexible mode (vGPUs of one profile, or whole while empty: the vgpu model's rule), the trace
boards' ladders are VGPUProfile rows, each distinct pod shape is a DesktopTemplate (a share of a
board with its allowed models, whole GPUs, or no GPU), and one tenant with room for everything asks.
Each request takes the tenant's quota lock, reads the fleet, asks the deployment's policy, claims
host and GPU rows with conditional updates, writes the desktop and its audit event and commits;
nothing is built (``queue_provisioning=False``) and live events go to an in-memory channel layer.

Units: the replay's hosts count trace milli-cores as vCPUs (``PORTAL_PLACEMENT_VCPU_MILLI=1``) so
CPU fits and scores are exactly the trace's. The policy scores against the trace's typical pods,
as the in-process replay does (a live portal learns them from its templates and recent desktops).

It runs in a scratch database (``portal_replay_<pid>`` on the configured server, created, migrated
and dropped), never in the portal's own. The summary compares every decision with the in-process
engine on the same seed.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

from django.conf import settings
from django.db import connection
from django.test.utils import override_settings

from allocations.placement import engine, replay
from allocations.placement.fleet import Fleet, use_fleet

IN_MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def run_through_db(
    nodes_path: str,
    pods_path: str,
    *,
    policy: str = "ours",
    seed: int = 42,
    limit: int | None = None,
    out_path: str | None = None,
    scratch: bool = True,
    compare: bool = True,
    clients: int = 1,
    stdout=None,
) -> dict:
    """Replay one seed through ``request_desktop``; prints and returns the JSON summary.
    ``scratch=False`` uses the current (empty, e.g. a test's) database as it is."""
    if clients < 1:
        raise ValueError("clients must be at least 1")
    if not scratch:
        return _run(nodes_path, pods_path, policy, seed, limit, out_path, compare, clients, stdout)
    from django.test.utils import setup_databases, teardown_databases

    db = settings.DATABASES["default"]
    saved_test = dict(db.get("TEST") or {})
    db["TEST"] = {**saved_test, "NAME": f"portal_replay_{os.getpid()}"}
    old = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    try:
        return _run(nodes_path, pods_path, policy, seed, limit, out_path, compare, clients, stdout)
    finally:
        teardown_databases(old, verbosity=0)
        db["TEST"] = saved_test


def _run(nodes_path, pods_path, policy, seed, limit, out_path, compare, clients=1, stdout=None) -> dict:
    nodes = replay.load_nodes(nodes_path)
    pods = replay.load_pods(pods_path)
    t_setup = time.perf_counter()
    users, template_of, gpu_index = _populate(nodes, pods, clients)
    setup_s = time.perf_counter() - t_setup
    total_gpus = sum(len(n.gpus) for n in nodes)
    order = replay.arrivals(pods, total_gpus, seed)
    if limit is not None:
        order = order[:limit]
    # One client keeps the engine's tie order (host names) so every decision can be compared with the
    # in-process replay; several clients break ties in their own orders, as the portal's processes do.
    fleet = Fleet(policy, vcpu_milli=1, demand=[r for _, r in pods], seed=seed, spread=clients > 1)
    work = _Work(order, template_of, gpu_index, seed)
    with override_settings(
        PORTAL_PLACEMENT_POLICY=policy, PORTAL_PLACEMENT_VCPU_MILLI=1, CHANNEL_LAYERS=IN_MEMORY_LAYER
    ):
        use_fleet(fleet)
        try:
            t0 = time.perf_counter()
            results = work.serve_alone(users[0]) if clients == 1 else work.serve_forked(users)
            wall = time.perf_counter() - t0
        finally:
            use_fleet(None)
    results.sort(key=lambda r: r[0])
    cap = total_gpus * engine.MILLI
    arrived = placed_milli = placed = 0
    ratio100 = None
    for (_seq, line, _took), (_name, req) in zip(results, order, strict=True):
        arrived += req.gpu_request_milli
        if line["host"] is not None:
            placed += 1
            placed_milli += req.gpu_request_milli
        if ratio100 is None and arrived >= cap:
            ratio100 = placed_milli / cap
    took = sorted(r[2] for r in results)
    lines = [r[1] for r in results]
    summary = {
        "mode": "through-db",
        "database": connection.vendor,
        "policy": policy,
        "model": "vgpu",
        "seed": seed,
        "clients": clients,
        "hosts": len(nodes),
        "gpus": total_gpus,
        "arrivals": len(order),
        "placed": placed,
        "unalloc_100": round(1 - ratio100, 6) if ratio100 is not None else None,
        "unalloc_130": round(1 - placed_milli / cap, 6),
        "stranded_130": round(1 - _committed_milli() / cap, 6),
        "rejected_by_reason": _rejections(),
        "decisions_per_s": round(len(order) / wall, 1) if wall else None,
        "decision_ms": {
            "median": round(took[len(took) // 2] * 1000, 2),
            "p95": round(took[int(len(took) * 0.95)] * 1000, 2),
        },
        "setup_s": round(setup_s, 1),
    }
    if clients == 1:
        summary["fleet_rebuilds"] = fleet.rebuilds
    if compare:
        summary["in_process"] = _compare(nodes_path, pods, policy, seed, limit, lines)
    if out_path:
        with open(out_path, "w") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)
    print(json.dumps(summary), file=stdout or sys.stdout)
    return summary


class _Work:
    """The arrivals, taken in order by one client or several forked ones (each its own tenant and
    user, like people of different tenants asking at once)."""

    def __init__(self, order, template_of, gpu_index, seed):
        self.order, self.template_of, self.gpu_index, self.seed = order, template_of, gpu_index, seed

    def one(self, seq: int, user) -> tuple:
        from allocations.exceptions import NoCapacity
        from allocations.services.request import request_desktop

        name, req = self.order[seq]
        t0 = time.perf_counter()
        try:
            desktop = request_desktop(
                actor=user,
                template_id=self.template_of[_shape_key(req)],
                duration_hours=1,
                name=name,
                queue_provisioning=False,
            )
        except NoCapacity:
            desktop = None
        took = time.perf_counter() - t0  # the request alone; writing its placement line is the replay's own work
        return seq, _line(self.seed, seq, name, req, desktop, self.gpu_index), took

    def serve_alone(self, user) -> list:
        return [self.one(seq, user) for seq in range(len(self.order))]

    def serve_forked(self, users) -> list:
        import multiprocessing
        import queue

        from django.db import connections

        ctx = multiprocessing.get_context("fork")
        next_seq = ctx.Value("i", 0)
        out = ctx.Queue()
        connections.close_all()  # each child opens its own connection

        def child(user):
            try:
                while True:
                    with next_seq.get_lock():
                        seq = next_seq.value
                        next_seq.value += 1
                    if seq >= len(self.order):
                        break
                    out.put(self.one(seq, user))
            except BaseException as exc:  # noqa: BLE001 - reported to the parent, which stops
                out.put(("error", repr(exc), 0))
            finally:
                connections.close_all()

        procs = [ctx.Process(target=child, args=(u,), daemon=True) for u in users]
        for p in procs:
            p.start()
        results = []
        while len(results) < len(self.order):
            try:
                item = out.get(timeout=5)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    raise RuntimeError("replay clients stopped before every arrival was answered") from None
                continue
            if item[0] == "error":
                raise RuntimeError(f"a replay client failed: {item[1]}")
            results.append(item)
        for p in procs:
            p.join()
        return results


def _shape_key(req: engine.Request) -> tuple:
    return (req.cpu_milli, req.memory_mib, req.num_gpu, req.gpu_milli if req.num_gpu else 0, req.models)


def _populate(nodes, pods, clients: int = 1):
    """Rows for the trace: profiles, hosts, flexible GPUs, a tenant and user per client, one template per
    pod shape."""
    from django.contrib.auth import get_user_model

    from allocations.models import DesktopTemplate, Quota
    from inventory.choices import GPUMode, HostState, TelemetrySource
    from inventory.models import GPU, Host, VGPUProfile
    from tenancy.models import Membership, Tenant
    from tenancy.roles import Role

    boards = sorted({n.gpu_model for n in nodes})
    VGPUProfile.objects.bulk_create(
        VGPUProfile(
            name=lad.name[key],
            board=board,
            board_framebuffer_mib=lad.fb * 1024,
            series="Q",
            framebuffer_mib=lad.size[key] * 1024,
            max_per_gpu=lad.maxi[key],
            source="shared/traces/README.md ladder",
        )
        for board in boards
        for lad in [engine.ladder_for(board)]
        for key in sorted(lad.size)
    )
    hosts = Host.objects.bulk_create(
        Host(
            name=n.name,
            libvirt_uri="test:///replay",
            state=HostState.ONLINE,
            cpu_cores=n.cpu_milli,
            memory_mib=n.memory_mib,
            telemetry_source=TelemetrySource.SIMULATED,
            notes="trace replay",
        )
        for n in nodes
    )
    GPU.objects.bulk_create(
        GPU(
            host=host,
            pci_address=f"0000:{g:02x}:00.0",
            model=n.gpu_model,
            framebuffer_mib=engine.ladder_for(n.gpu_model).fb * 1024,
            mode=GPUMode.FLEXIBLE,
        )
        for n, host in zip(nodes, hosts, strict=True)
        for g in range(len(n.gpus))
    )
    tenants, users = [], []
    for k in range(clients):
        tenant = Tenant.objects.create(name=f"Trace replay {k + 1}", slug=f"trace-replay-{k + 1}")
        Quota.objects.create(tenant=tenant, max_desktops=10**9, max_framebuffer_mib=10**15, max_desktop_hours=24 * 90)
        user = get_user_model().objects.create_user(username=f"replay-{k + 1}-{uuid.uuid4().hex[:6]}")
        Membership.objects.create(user=user, role=Role.TENANT_MEMBER, tenant=tenant)
        tenants.append(tenant)
        users.append(user)
    template_of = {}
    for _name, req in pods:
        key = _shape_key(req)
        if key in template_of:
            continue
        models = sorted(req.models) if req.models else []
        if req.is_share:
            gpu = {"gpu_share_milli": req.gpu_milli, "gpu_count": 1, "gpu_models": models}
        else:
            gpu = {"gpu_count": req.num_gpu, "gpu_models": models if req.num_gpu else []}
        template = DesktopTemplate.objects.create(
            name=f"trace shape {len(template_of) + 1}",
            vcpus=req.cpu_milli,
            memory_mib=req.memory_mib,
            disk_image="none",
            **gpu,
        )
        template.allowed_tenants.add(*tenants)
        template_of[key] = template.pk
    if connection.vendor == "postgresql":  # planner statistics for the rows just loaded
        with connection.cursor() as cur:
            cur.execute(
                f"ANALYZE {Host._meta.db_table}, {GPU._meta.db_table}, {VGPUProfile._meta.db_table}, "
                f"{DesktopTemplate._meta.db_table}"
            )
    gpu_index = {gid: int(pci[5:7], 16) for gid, pci in GPU.objects.values_list("id", "pci_address")}
    return users, template_of, gpu_index


def _line(seed, seq, name, req, desktop, gpu_index) -> dict:
    from allocations.models import Desktop

    if desktop is None:
        return {"seed": seed, "seq": seq, "pod": name, "host": None, "gpus": [], "milli": 0, "profile": None}
    gpus = sorted(
        gpu_index[g]
        for g in Desktop.gpus.through.objects.filter(desktop_id=desktop.pk).values_list("gpu_id", flat=True)
    )
    milli = 0 if not req.num_gpu else (req.gpu_milli if req.is_share else engine.MILLI)
    return {
        "seed": seed,
        "seq": seq,
        "pod": name,
        "host": desktop.host.name,
        "gpus": gpus,
        "milli": milli,
        "profile": desktop.profile.name if desktop.profile_id else None,
    }


def _rejections() -> dict:
    """What the request service counted for /metrics: placement failures by reason."""
    from inventory.models import PlacementFailure

    return dict(PlacementFailure.objects.order_by("reason").values_list("reason", "count"))


def _committed_milli() -> float:
    """GPU capacity committed at the end: each vGPU at its profile's share of the board, whole GPUs as 1000."""
    from inventory.models import GPU

    total = 0.0
    for used, fb, board_fb in GPU.objects.filter(instances_used__gt=0).values_list(
        "instances_used", "current_profile__framebuffer_mib", "current_profile__board_framebuffer_mib"
    ):
        total += used * fb * engine.MILLI / board_fb if fb else engine.MILLI
    return total


def _compare(nodes_path, pods, policy, seed, limit, lines) -> dict:
    """The same seed through the engine in-process: its figures and how many decisions agree."""
    import io

    buf = io.StringIO()
    typical = engine.policy_typical(policy, [r for _, r in pods])
    res = replay.run_seed(nodes_path, pods, policy, "vgpu", seed, typical, buf, limit)
    ours = [(ln["host"], ln["gpus"], ln["profile"]) for ln in lines]
    theirs = [(d["host"], d["gpus"], d["profile"]) for d in map(json.loads, buf.getvalue().splitlines())]
    same = sum(a == b for a, b in zip(ours, theirs, strict=False))
    first = next((k for k, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), None)
    if first is not None:
        print(f"first differing decision: seq {first}: db {ours[first]} vs engine {theirs[first]}", file=sys.stderr)
    return {
        "unalloc_130": res["unalloc_130"],
        "stranded_130": res.get("stranded_130"),
        "decisions_per_s": res["decisions_per_s"],
        "same_decisions": f"{same}/{len(theirs)}",
    }
