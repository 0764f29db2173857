"""Pages and /metrics at 10, 100 and 1,213 hosts (issue 19): what an operator of the trace's cluster opens.

    DATABASE_URL=postgres://postgres@127.0.0.1:54329/portal .venv/bin/python bench/fleet_scale.py \
        [--sizes 10 100 1213] [--repeat 5]

For each N it builds, in its own database (``portal_bench_fleet`` on the configured server, created,
migrated and dropped), the first N nodes of the openb trace's node list (``../shared/traces/openb``) as
hosts with their GPUs (the replay's rows: ``replay_db._populate``: the trace boards' profile ladders, one
tenant offered one template per pod shape, 151 of them), puts one vGPU desktop on every tenth GPU
(10 % busy), records one sampling round of every host through the ingest service (so /metrics has
figures), and then reads each page with Django's test client in-process: median of ``--repeat``
server times (wall, and this process's CPU time, which a busy shared machine inflates less),
response size and query count. /metrics also gives its line count, by default and with
the per-vGPU series (``?vgpu=1``). The growth exponent between the two largest N is
log(t_large / t_small) / log(N_large / N_small): 0 flat, 1 linear.

The figures from the issue (measured before these changes) are printed beside for reference. If
``bench/telemetry_scale.py`` (ingest and storage) is present, its ``measure(n)`` runs too and its
figures are printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
TRACES = os.path.join(ROOT, "..", "shared", "traces", "openb")
DATABASE = "portal_bench_fleet"

#: Before (the issue's table, same machine class): (ms, KB) at 10, 100, 1,213 hosts.
BEFORE = {
    "/inventory/": {10: (49, 28), 100: (225, 242), 1213: (2321, 3000)},
    "/metrics": {10: (44, 29), 100: (135, 248), 1213: (1496, 3100)},
    "/desktops/new/ (151 templates)": {1213: (750, None)},  # 0.6-0.9 s, 212 queries
}
BUSY_EVERY = 10  # one GPU in ten runs a desktop
MEMBERS = 100  # people of the tenant owning them


def _setup():
    import django

    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()


def build(n_hosts: int) -> dict:
    """The first ``n_hosts`` trace nodes as rows, 10 % of GPUs busy, one sampling round recorded."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.db.models import F

    from allocations.choices import DesktopStatus
    from allocations.models import Desktop, DesktopTemplate, Quota
    from allocations.placement import replay, replay_db
    from inventory.drivers.telemetry import GPUTelemetry, HostTelemetry, VGPUTelemetry
    from inventory.models import GPU, Host, VGPUProfile
    from inventory.services.utilization import record_sample
    from tenancy.models import Membership
    from tenancy.roles import Role

    nodes = replay.load_nodes(os.path.join(TRACES, "openb_node_list_gpu_node.csv"))[:n_hosts]
    pods = replay.load_pods(os.path.join(TRACES, "openb_pod_list_default.csv"))
    users, _template_of, _ = replay_db._populate(nodes, pods)
    member = users[0]
    tenant = member.memberships.get().tenant
    owners = [member]  # the desktops belong to MEMBERS people of the tenant, as a real one's would
    for k in range(1, MEMBERS):
        owners.append(get_user_model().objects.create_user(username=f"bench-member-{k}-{uuid.uuid4().hex[:6]}"))
        Membership.objects.create(user=owners[-1], role=Role.TENANT_MEMBER, tenant=tenant)
    admin = get_user_model().objects.create_user(username=f"bench-admin-{uuid.uuid4().hex[:6]}")
    Membership.objects.create(user=admin, role=Role.PLATFORM_ADMIN)
    smallest = {}
    for p in VGPUProfile.objects.order_by("framebuffer_mib"):
        smallest.setdefault(p.board, p)
    template = DesktopTemplate.objects.order_by("pk").first()
    gpus = list(GPU.objects.select_related("host").order_by("host__name", "pci_address"))
    busy = gpus[::BUSY_EVERY]
    mdev_of = {}
    with transaction.atomic():
        desktops = []
        for k, gpu in enumerate(busy):
            profile = smallest[gpu.model]
            mdev_of[gpu.pk] = str(uuid.uuid4())
            desktops.append(
                Desktop(
                    name=f"bench-{k}",
                    tenant=tenant,
                    owner=owners[k % MEMBERS],
                    template=template,
                    profile=profile,
                    vcpus=1,
                    memory_mib=1024,
                    framebuffer_mib=profile.framebuffer_mib,
                    duration_hours=8,
                    status=DesktopStatus.RUNNING,
                    host=gpu.host,
                    mdev_uuid=mdev_of[gpu.pk],
                )
            )
        desktops = Desktop.objects.bulk_create(desktops)
        Desktop.gpus.through.objects.bulk_create(
            Desktop.gpus.through(desktop_id=d.pk, gpu_id=g.pk) for d, g in zip(desktops, busy, strict=True)
        )
        for gpu in busy:
            GPU.objects.filter(pk=gpu.pk).update(current_profile=smallest[gpu.model], instances_used=1)
            Host.objects.filter(pk=gpu.host_id).update(
                vcpus_used=F("vcpus_used") + 1, memory_used_mib=F("memory_used_mib") + 1024
            )
        Quota.objects.filter(tenant=tenant).update(
            desktops_held=len(desktops), framebuffer_held_mib=sum(d.framebuffer_mib for d in desktops)
        )
    t0 = time.perf_counter()
    by_host: dict = {}
    for gpu in gpus:
        by_host.setdefault(gpu.host, []).append(gpu)
    now = time.time()
    for host, boards in by_host.items():
        readings = []
        for b, gpu in enumerate(boards):
            vgpus = ()
            if gpu.pk in mdev_of:
                vgpus = (VGPUTelemetry(mdev_of[gpu.pk], "bench", 35.0, 10.0, 0.0, 0.0, 1024),)
            readings.append(
                GPUTelemetry(
                    gpu.pci_address,
                    f"GPU-{gpu.pk:08d}",
                    gpu.model,
                    sm_util=float((b * 37) % 100),
                    mem_util=12.0,
                    fb_used_mib=1024 * len(vgpus),
                    fb_total_mib=gpu.framebuffer_mib,
                    temperature_c=45.0 + b,
                    power_w=80.0 + b,
                    vgpus=vgpus,
                )
            )
        record_sample(host, HostTelemetry("simulated", "ok", now, tuple(readings)))
    sampling_s = time.perf_counter() - t0
    return {
        "admin": admin,
        "member": member,
        "host": nodes[len(nodes) // 2].name,
        "gpus": len(gpus),
        "busy": len(busy),
        "templates": tenant.templates.count(),
        "sampling_s": sampling_s,
    }


def measure_page(client, url: str, repeat: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        response = client.get(url)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        assert response.status_code == 200, (url, response.status_code, response.content[:300])
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    body = response.content
    return {
        "ms": round(statistics.median(times) * 1000, 1),
        "cpu_ms": round(statistics.median(cpu) * 1000, 1),  # this process only: the database's time is not in it
        "kb": round(len(body) / 1024, 1),
        "queries": len(ctx.captured_queries),
        "lines": body.count(b"\n") if url.startswith("/metrics") else None,
    }


def run_size(n_hosts: int, repeat: int) -> dict:
    from django.core.management import call_command
    from django.test import Client

    from allocations.placement import fleet as placement

    call_command("flush", interactive=False, verbosity=0)
    placement.use_fleet(None)
    world = build(n_hosts)
    admin, member = Client(), Client()
    admin.force_login(world["admin"])
    member.force_login(world["member"])
    pages = {
        "/inventory/": admin,
        "/inventory/?page=20": admin,
        "/inventory/?q=node-00&model=V100M16": admin,
        "/inventory/hosts/": admin,
        "/inventory/hosts/<host>/": admin,
        "/": admin,
        "/audit/": admin,
        "/api/hosts/": admin,
        "/api/gpus/": admin,
        "/api/desktops/": admin,
        "/api/fleet/overview/": admin,
        "/metrics": admin,
        "/metrics?vgpu=1": admin,
        "/metrics?host=<host>": admin,
        "/desktops/new/": member,
        "/ (member)": member,
    }
    figures = {}
    for label, client in pages.items():
        url = label.split(" ")[0].replace("<host>", world["host"])
        client.get(url)  # warm: the placement fleet, the catalog, template caches
        figures[label] = measure_page(client, url, repeat)
    meta = {k: world[k] for k in ("gpus", "busy", "templates")}
    meta["sampling_round_s"] = round(world["sampling_s"], 2)
    return {"hosts": n_hosts, **meta, "pages": figures}


def exponent(small: dict, large: dict, key: str, label: str) -> float | None:
    a, b = small["pages"][label][key], large["pages"][label][key]
    if not a or not b:
        return None
    return round(math.log(b / a) / math.log(large["hosts"] / small["hosts"]), 2)


def report(results: list[dict]) -> str:
    lines = []
    sizes = [r["hosts"] for r in results]
    head = (
        "| page | "
        + " | ".join(f"{n} hosts: ms (CPU ms), KB, queries" for n in sizes)
        + " | growth (time, CPU, size) |"
    )
    lines += [head, "| --- |" + " ---: |" * len(sizes) + " --- |"]
    for label in results[0]["pages"]:
        cells = []
        for r in results:
            p = r["pages"][label]
            cell = f"{p['ms']} ms ({p['cpu_ms']} CPU), {p['kb']} KB, {p['queries']} q"
            if p["lines"] is not None:
                cell += f", {p['lines']} lines"
            cells.append(cell)
        growth = ""
        if len(results) >= 2:
            a, b = results[-2], results[-1]
            growth = ", ".join(str(exponent(a, b, key, label)) for key in ("ms", "cpu_ms", "kb"))
        lines.append(f"| `{label}` | " + " | ".join(cells) + f" | {growth} |")
    lines.append("")
    for r in results:
        lines.append(
            f"- {r['hosts']} hosts: {r['gpus']} GPUs, {r['busy']} busy, {r['templates']} templates offered; "
            f"one sampling round through `record_sample`: {r['sampling_round_s']} s"
        )
    lines.append("")
    lines.append("Before (the issue's figures, same machine class):")
    for label, by_n in BEFORE.items():
        lines.append(f"- `{label}`: " + "; ".join(f"{n}: {ms} ms, {kb} KB" for n, (ms, kb) in by_n.items()))
    return "\n".join(lines)


def telemetry_figures(sizes: list[int]) -> list:
    try:
        from bench.telemetry_scale import measure
    except ImportError:
        return []
    out = []
    for n in sizes:
        try:
            out.append({"hosts": n, **measure(n)})
        except (Exception, SystemExit) as exc:  # its failure must not hide the page figures
            out.append({"hosts": n, "error": repr(exc)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1213])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="also write the figures as JSON to this file")
    args = parser.parse_args()
    _setup()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import override_settings, setup_databases, teardown_databases

    if connection.vendor != "postgresql":
        print("warning: not PostgreSQL (set DATABASE_URL); figures are for", connection.vendor, file=sys.stderr)
    db = settings.DATABASES["default"]
    db["TEST"] = {**(db.get("TEST") or {}), "NAME": DATABASE}
    old = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    results = []
    try:
        with override_settings(
            PORTAL_PLACEMENT_VCPU_MILLI=1,  # the trace's hosts count milli-cores, as the replay does
            # one sampling round of 1,213 hosts in this one process takes longer than the default staleness
            # window of /metrics (6 intervals, at least 60 s): widen it so every board's sample counts
            PORTAL_SAMPLE_INTERVAL_S=120,
            CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
            DEBUG=False,
        ):
            for n in args.sizes:
                result = run_size(n, args.repeat)
                results.append(result)
                print(json.dumps(result), flush=True)
    finally:
        teardown_databases(old, verbosity=0)
    print()
    print(report(results))
    telemetry = telemetry_figures(args.sizes)
    if telemetry:
        print("\nbench/telemetry_scale.py measure(n):")
        for row in telemetry:
            print(json.dumps(row, default=str))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"pages": results, "telemetry": telemetry}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
