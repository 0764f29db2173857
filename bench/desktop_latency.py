"""request→RUNNING latency of desktops on a running portal, through its HTTP API.

Start the portal with `make run` (the VM lab when it can run), then:

    PW=$(grep alice var/demo-logins.txt | cut -d' ' -f2)
    .venv/bin/python bench/desktop_latency.py --user alice --password "$PW" -n 20

Each round requests a desktop, polls until RUNNING (or FAILED), then releases it and waits until
RELEASED, so every request starts from the same empty lab. Prints one JSON line per desktop and a
summary (median, p95, max) last. Requests go to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.error
import urllib.request


def call(base: str, token: str | None, method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{method} {path}: {exc.code} {exc.read().decode()}") from None


def wait(base, token, desktop_id, statuses, timeout=120.0) -> tuple[str, float]:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        status = call(base, token, "GET", f"/api/desktops/{desktop_id}/")["status"]
        if status in statuses:
            return status, time.monotonic() - started
        time.sleep(0.02)
    raise SystemExit(f"desktop {desktop_id} not in {statuses} after {timeout} s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--template", type=int, default=None, help="template id (default: the first offered)")
    parser.add_argument("-n", type=int, default=20)
    args = parser.parse_args()
    if not args.url.startswith(("http://127.", "http://localhost")):
        raise SystemExit("this benchmark only talks to a portal on this machine")
    token = call(args.url, None, "POST", "/api/auth/token/", {"username": args.user, "password": args.password})[
        "token"
    ]
    template = args.template or call(args.url, token, "GET", "/api/templates/")["results"][0]["id"]
    latencies, release = [], []
    for _ in range(args.n):
        started = time.monotonic()
        desktop = call(args.url, token, "POST", "/api/desktops/", {"template": template, "duration_hours": 1})
        accepted = time.monotonic() - started
        status, _ = wait(args.url, token, desktop["id"], {"running", "failed"})
        total = time.monotonic() - started
        if status != "running":
            path = "/api/desktops/{}/".format(desktop["id"])
            detail = call(args.url, token, "GET", path)
            raise SystemExit(f"desktop {desktop['id']} failed: {detail['status_reason']}")
        latencies.append(total)
        released_at = time.monotonic()
        call(args.url, token, "POST", f"/api/desktops/{desktop['id']}/release/")
        wait(args.url, token, desktop["id"], {"released", "failed"})
        release.append(time.monotonic() - released_at)
        print(
            json.dumps(
                {
                    "desktop": desktop["id"],
                    "accepted_s": round(accepted, 3),
                    "running_s": round(total, 3),
                    "released_s": round(release[-1], 3),
                }
            )
        )
    summary = {
        "n": len(latencies),
        "request_to_running_s": {
            "median": round(statistics.median(latencies), 3),
            "p95": round(percentile(latencies, 0.95), 3),
            "max": round(max(latencies), 3),
        },
        "release_to_released_s": {
            "median": round(statistics.median(release), 3),
            "p95": round(percentile(release, 0.95), 3),
        },
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
