"""Streamed exports under the real ASGI server: time to first byte, total time and Daphne's peak RSS.

Needs PostgreSQL (``eval "$(scripts/services.sh start)"`` sets DATABASE_URL). It makes its own database
``portal_bench_export`` next to the one in DATABASE_URL (dropped at the end unless ``--keep-db``), writes N
chained audit events with COPY (``audit_export.seed``), then for each mode starts a fresh Daphne process
serving ``portal.asgi:application`` on 127.0.0.1 and downloads the CSV export
(``/api/exports/audit-events/?format=csv&object_type=allocations.desktop``: the seeded events, so both
downloads are the same bytes) over HTTP with a signed-in session:

- ``sync``: the view hands Django the sync iterator (``ExportView.async_under_asgi = False``), as before
  issue 15: Django reads it whole (``sync_to_async(list)``) before the first byte;
- ``async``: the async iterator the portal serves under ASGI now (``reports.streaming``).

Printed per mode (JSON lines), then both side by side: seconds to the headers and to the first body
byte, total seconds, bytes and their SHA-256, Daphne's RSS after a warm-up request and its peak
(``VmHWM`` of /proc/<pid>/status: the process is fresh per mode, so the peak is this download's).

    .venv/bin/python bench/export_asgi.py --events 300000
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from audit_export import seed  # noqa: E402  (bench/ is not a package)
from ws_fanout import LOG_DIR, Daphne, free_port, recreate_database, signed_in_session, with_db  # noqa: E402

DB_NAME = "portal_bench_export"
PATH = "/api/exports/audit-events/"

# Daphne in this process, with the export view set to the mode's iterator (argv: mode, port).
SERVE = r"""
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
import django
django.setup()
from reports.api import ExportView
ExportView.async_under_asgi = sys.argv[1] == "async"
from daphne.cli import CommandLineInterface
CommandLineInterface().run(["-b", "127.0.0.1", "-p", sys.argv[2], "portal.asgi:application"])
"""


class ModeDaphne(Daphne):
    """``ws_fanout.Daphne`` (wait until it listens, stop, errors), started with the mode's iterator."""

    def __init__(self, mode: str, port: int, env: dict, log: Path):
        super().__init__(port, env, log, command=[sys.executable, "-c", SERVE, mode, str(port)])


def status_mib(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def download(port: int, session: str, query: str) -> dict:
    """GET the export; seconds to the headers, to the first body byte and to the end; bytes and digest."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    started = time.perf_counter()
    conn.request("GET", f"{PATH}?{query}", headers={"Cookie": f"sessionid={session}", "Connection": "close"})
    response = conn.getresponse()
    headers_at = time.perf_counter() - started
    if response.status != 200:
        raise SystemExit(f"{response.status}: {response.read()[:500]!r}")
    digest, size, first_at = hashlib.sha256(), 0, None
    while chunk := response.read1(256 * 1024):
        if first_at is None:
            first_at = time.perf_counter() - started
        digest.update(chunk)
        size += len(chunk)
    total = time.perf_counter() - started
    conn.close()
    return {
        "headers_s": round(headers_at, 3),
        "first_byte_s": round(first_at or total, 3),
        "total_s": round(total, 2),
        "bytes": size,
        "sha256": digest.hexdigest(),
    }


def run_mode(mode: str, env: dict, session: str) -> dict:
    daphne = ModeDaphne(mode, free_port(), env, LOG_DIR / f"export-asgi-{mode}.log")
    try:
        download(daphne.port, session, "format=csv&object_type=none")  # warm-up: imports, connections, no rows
        rss_before = status_mib(daphne.proc.pid, "VmRSS")
        result = {"mode": mode, **download(daphne.port, session, "format=csv&object_type=allocations.desktop")}
        result.update(
            daphne_rss_before_mb=rss_before,
            daphne_peak_rss_mb=status_mib(daphne.proc.pid, "VmHWM"),
            daphne_errors=daphne.errors()[:3],
        )
        result["daphne_growth_mb"] = round(result["daphne_peak_rss_mb"] - rss_before, 1)
        return result
    finally:
        daphne.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--modes", default="sync,async", help="sync (before issue 15), async (now), or both")
    parser.add_argument("--keep-db", action="store_true", help=f"leave {DB_NAME} for another run")
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        sys.exit('set DATABASE_URL to a PostgreSQL server (eval "$(scripts/services.sh start)")')
    url = with_db(base, DB_NAME)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    recreate_database(base, DB_NAME)
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    seconds = seed(url, args.events)  # sets up Django on the bench database in this process
    print(json.dumps({"seeded_events": args.events, "seconds": round(seconds, 1)}), flush=True)
    from django.contrib.auth import get_user_model

    session = signed_in_session(get_user_model().objects.get(username="bench-auditor"))
    try:
        results = []
        for mode in args.modes.split(","):
            results.append(run_mode(mode, env, session))
            print(json.dumps(results[-1]), flush=True)
        keys = ("headers_s", "first_byte_s", "total_s", "bytes", "daphne_rss_before_mb", "daphne_peak_rss_mb")
        summary = {"events": args.events, **{r["mode"]: {k: r[k] for k in keys} for r in results}}
        summary["same_bytes"] = len({r["sha256"] for r in results}) == 1
        print(json.dumps(summary))
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            recreate_database(base, DB_NAME, drop_only=True)


if __name__ == "__main__":
    main()
