"""Integration tier (issue 15): the real PostgreSQL server stops for 10 s under a real Daphne.

Reproduction: with PostgreSQL down, API errors came back as HTML 500 pages and anonymous ``/healthz``
showed the database's connection error text. Here a private PostgreSQL cluster (initdb on a free port)
serves a Daphne process; it is stopped with ``pg_ctl stop`` for 10 s while the API is called, then
started again. Every API answer meanwhile is the JSON error shape with 503, ``/healthz`` says "database
unavailable" and nothing more, and the first request after the restart succeeds with nothing lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from allocations.tests.brokers import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    return found[-1] if found else None


def _as_postgres(*command) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


class PrivatePostgres:
    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.port = free_port()
        self.data = Path(tempfile.mkdtemp(prefix="portal-pg-outage-"))
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/portal"
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                str(bin_dir / "initdb"), "-D", str(self.data / "db"), "-U", "postgres", "-A", "trust", "--no-sync"
            ),
            check=True,
            capture_output=True,
        )

    def start(self):
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data} -c fsync=off"
        subprocess.run(
            _as_postgres(
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data / "db"),
                "-l",
                str(self.data / "log"),
                "-w",
                "-o",
                options,
                "start",
            ),
            check=True,
            capture_output=True,
        )

    def stop(self):
        subprocess.run(
            _as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data / "db"), "-m", "fast", "-w", "stop"),
            capture_output=True,
        )

    def remove(self):
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)


def _call(url: str, *, method="GET", token=None, body=None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    if token:
        request.add_header("Authorization", f"Token {token}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


@pytest.fixture
def portal_on_private_postgres(tmp_path):
    bin_dir = _pg_bin()
    if bin_dir is None or not shutil.which("runuser") and os.geteuid() == 0:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL's server binaries are needed for the database outage test")
        pytest.skip("PostgreSQL's server binaries are not installed")
    pg = PrivatePostgres(bin_dir)
    pg.start()
    env = dict(os.environ, DATABASE_URL=pg.url, DEBUG="0", PORTAL_AUDIT_ANCHOR="off")
    subprocess.run(
        _as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "portal"),
        check=True,
        capture_output=True,
    )
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    script = (
        "from allocations.tests.factories import make_membership, make_tenant, make_user;"
        "from tenancy.tokens import issue_token;"
        "u = make_user('dora'); make_membership(u, 'tenant-member', make_tenant('Outage Inc', 'outage'));"
        "print(issue_token(u, actor=None)[1])"
    )
    token = (
        subprocess.run([*manage, "shell", "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    port = free_port()
    log = open(tmp_path / "daphne.log", "ab")
    daphne = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "portal.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=2)
            break
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline, (tmp_path / "daphne.log").read_text()
            time.sleep(0.2)
        except urllib.error.HTTPError:
            break
    yield base, token, pg
    daphne.terminate()
    daphne.wait(timeout=10)
    pg.remove()


def test_postgresql_stopped_for_10_s_api_answers_json_503_healthz_says_so_and_recovery_is_immediate(
    portal_on_private_postgres,
):
    base, token, pg = portal_on_private_postgres
    assert _call(f"{base}/api/desktops/", token=token)[0] == 200

    pg.stop()
    stopped = time.monotonic()
    answers = []
    while time.monotonic() - stopped < 10:
        for method, path, body in (
            ("GET", "/api/desktops/", None),
            ("POST", "/api/desktops/", {"template": 1, "duration_hours": 1}),
            ("GET", "/api/me/", None),
            ("GET", "/api/templates/", None),
        ):
            answers.append((path, *_call(base + path, method=method, token=token, body=body)))
        time.sleep(0.5)
    health = _call(base + "/healthz")
    pg.start()
    recovered = _call(f"{base}/api/me/", token=token)

    assert answers and {status for _, status, _, _ in answers} == {503}, answers[:3]
    for path, _, content_type, text in answers:
        assert content_type.startswith("application/json"), (path, content_type, text[:200])
        error = json.loads(text)["error"]
        assert error["status"] == 503 and "database is unavailable" in error["message"]
    assert health[0] == 503 and "database unavailable" in health[2]
    assert "connection" not in health[2].lower() and "5432" not in health[2] and str(pg.port) not in health[2]
    print(f"\nPostgreSQL down 10 s: {len(answers)} API calls, all JSON 503; /healthz: {health[2]}")
    assert recovered[0] == 200 and json.loads(recovered[2])["username"] == "dora"
