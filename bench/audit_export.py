"""Exporting 1,000,000 audit events with constant memory, and verifying the chain over them.

Needs PostgreSQL (``eval "$(scripts/services.sh start)"`` sets DATABASE_URL). It creates its own
database ``<name>_bench_audit``, migrates it, writes N chained events with COPY, then, each in a
fresh process so peak RSS is the export's own: streams the CSV, JSON and NDJSON exports through
the real view (``/api/exports/audit-events/``) to /dev/null, and runs ``verify_audit``'s walk.
Prints one JSON line per run and a summary last.

    .venv/bin/python bench/audit_export.py --events 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def bench_url(base: str) -> str:
    parts = urlsplit(base)
    if not parts.scheme.startswith("postgres"):
        raise SystemExit("DATABASE_URL must point at PostgreSQL (scripts/services.sh start)")
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "_bench_audit"))


def create_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def seed(url: str, count: int) -> float:
    """Write ``count`` chained events with COPY (the same canonical hashing as audit.chain)."""
    os.environ["DATABASE_URL"] = url
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    django.setup()
    import psycopg

    from audit.hashing import GENESIS, event_hash

    started = time.perf_counter()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    prev = GENESIS
    columns = (
        "occurred_at",
        "actor_id",
        "actor_username",
        "tenant_id",
        "tenant_name",
        "verb",
        "object_type",
        "object_id",
        "object_repr",
        "before",
        "after",
        "source_ip",
        "request_id",
        "seq",
        "prev_hash",
        "hash",
    )
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        with cursor.copy(f"COPY audit_auditevent ({', '.join(columns)}) FROM STDIN") as copy:
            for i in range(1, count + 1):
                values = {
                    "seq": i,
                    "occurred_at": base + timedelta(seconds=i),
                    "actor_id": 1 + i % 50,
                    "actor_username": f"user{i % 50}",
                    "tenant_id": 1 + i % 7,
                    "tenant_name": f"Tenant {i % 7}",
                    "verb": ("desktop.running", "desktop.released", "quota.updated")[i % 3],
                    "object_type": "allocations.desktop",
                    "object_id": str(i),
                    "object_repr": f"Desktop {i}",
                    "before": {"status": "provisioning"},
                    "after": {"status": "running", "n": i},
                    "source_ip": "127.0.0.1",
                    "request_id": f"req{i:08d}",
                    "prev_hash": prev,
                }
                digest = event_hash(values)
                copy.write_row(
                    [
                        values["occurred_at"],
                        values["actor_id"],
                        values["actor_username"],
                        values["tenant_id"],
                        values["tenant_name"],
                        values["verb"],
                        values["object_type"],
                        values["object_id"],
                        values["object_repr"],
                        json.dumps(values["before"]),
                        json.dumps(values["after"]),
                        values["source_ip"],
                        values["request_id"],
                        i,
                        prev,
                        digest,
                    ]
                )
                prev = digest
        cursor.execute(
            "INSERT INTO audit_chainhead (id, seq, hash) VALUES (1, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash",
            [count, prev],
        )
        cursor.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, "
            "is_staff, is_active, date_joined) VALUES ('!', true, 'bench-auditor', '', '', '', true, "
            "true, now())"
        )
        conn.commit()
    return time.perf_counter() - started


CHILD = r"""
import json, os, resource, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
import django
django.setup()
from django.contrib.auth import get_user_model
from django.test import RequestFactory
mode, fmt = sys.argv[1], sys.argv[2]
start = time.perf_counter()
if mode == "export":
    from reports.api import AuditEventExportView
    request = RequestFactory().get("/api/exports/audit-events/", {"format": fmt})
    from rest_framework.test import force_authenticate
    force_authenticate(request, user=get_user_model().objects.get(username="bench-auditor"))
    response = AuditEventExportView.as_view()(request)
    size = 0
    with open(os.devnull, "wb") as sink:
        for chunk in response.streaming_content:
            size += len(chunk)
            sink.write(chunk)
    result = {"mode": mode, "format": fmt, "bytes": size}
else:
    from audit import chain
    verification = chain.verify()
    result = {"mode": mode, "ok": verification.ok, "events": verification.events}
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
result.update(seconds=round(elapsed, 2), peak_rss_mb=round(peak, 1))
print(json.dumps(result))
"""


def child(url: str, mode: str, fmt: str = "") -> dict:
    env = dict(os.environ, DATABASE_URL=url, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, fmt], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600
    )
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--formats", default="csv,ndjson,json")
    args = parser.parse_args()
    url = bench_url(os.environ.get("DATABASE_URL", ""))
    create_database(url)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=dict(os.environ, DATABASE_URL=url), check=True
    )
    seconds = seed(url, args.events)
    print(json.dumps({"seeded_events": args.events, "seconds": round(seconds, 1)}), flush=True)
    results = []
    for fmt in args.formats.split(","):
        result = child(url, "export", fmt)
        result["rows_per_s"] = round(args.events / result["seconds"])
        results.append(result)
        print(json.dumps(result), flush=True)
    verify = child(url, "verify")
    verify["events_per_s"] = round(args.events / verify["seconds"])
    print(json.dumps(verify), flush=True)
    print(
        json.dumps(
            {
                "events": args.events,
                "exports": {
                    r["format"]: {
                        "rows_per_s": r["rows_per_s"],
                        "peak_rss_mb": r["peak_rss_mb"],
                        "mb": round(r["bytes"] / 2**20),
                    }
                    for r in results
                },
                "verify": {
                    "ok": verify["ok"],
                    "events_per_s": verify["events_per_s"],
                    "peak_rss_mb": verify["peak_rss_mb"],
                },
            }
        )
    )


if __name__ == "__main__":
    main()
