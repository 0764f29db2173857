"""Browser tier: the real ASGI server (Daphne) on the pytest-django test database, real Celery
workers, and headless Chromium driven by Playwright.

Every test in this package is integration tier (``integration``, ``django_db(transaction=True)``:
the server and the workers are other processes, so rows must be committed to be seen). It needs
PostgreSQL (the server shares the test database), Redis (channel layer and broker, shared by this
process, the server and the workers) and Debian's /usr/bin/chromium with the playwright package
(``scripts/browser.sh``). A missing one skips these tests, or fails them where PORTAL_REQUIRE_BROWSER=1.

Playwright's sync API keeps an asyncio loop running in this thread while the browser is open, so
``browser`` lets the ORM run here (DJANGO_ALLOW_ASYNC_UNSAFE) for as long as it lives, and anything
that goes through ``async_to_sync`` (``core.live.publish``, services that publish on commit)
must run through ``in_thread``.

Logs of the server, the workers and the console relay, screenshots, and the console of each page are
kept under ``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
import redis
from django.conf import global_settings, settings
from django.db import connection, connections

from core.tests.http import free_port, wait_for_healthz
from portal.settings import redis_channel_layer

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HERE = Path(__file__).resolve().parent
#: The VM-lab hosts of the console tests: the console relay (a process of its own, started once per
#: session) serves these names, so a test's host must be called one of them.
CONSOLE_LAB_HOSTS = ("console-a40",)
_CALL_REPORT = pytest.StashKey()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark every test of this package (before pytest-django orders tests by their database marker)."""
    for item in items:
        if HERE not in Path(item.path).resolve().parents:
            continue
        if item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("django_db") is None:
            item.add_marker(pytest.mark.django_db(transaction=True))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


def _require(problem: str) -> None:
    if problem:
        if os.environ.get("PORTAL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"PORTAL_REQUIRE_BROWSER=1 but {problem}", pytrace=False)
        pytest.skip(problem)


@pytest.fixture(scope="session")
def browser_requirements():
    """Skip (or fail, with PORTAL_REQUIRE_BROWSER=1) unless PostgreSQL, Redis and Chromium are here."""
    _require(
        ""
        if connection.vendor == "postgresql"
        else "the ASGI server shares the test database: needs PostgreSQL (DATABASE_URL)"
    )
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        _require(f"Redis at {settings.REDIS_URL} does not answer ({exc}); scripts/services.sh starts one")
    _require("" if os.access(CHROMIUM, os.X_OK) else f"{CHROMIUM} is missing; scripts/browser.sh installs it")
    _require("" if importlib.util.find_spec("playwright") else "playwright is not installed; scripts/browser.sh")


@pytest.fixture(autouse=True)
def _browser_settings(browser_requirements, _fast_settings, settings):
    """After the root conftest's fast settings: what this process shares with the server must match it."""
    # The server checks passwords with the real hashers; the root conftest's MD5 is not among them.
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    # Events published here reach the server's websocket clients only through Redis.
    settings.CHANNEL_LAYERS = {"default": redis_channel_layer(settings.REDIS_URL)}


def _database_url(db: dict) -> str:
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    query = f"?{urlencode(db['OPTIONS'])}" if db.get("OPTIONS") else ""
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}{port}/{quote(db['NAME'], safe='')}{query}"


class Process:
    """A child process in its own process group; its output goes to a log under test-artifacts/."""

    def __init__(self, argv: list[str], *, env: dict, log: Path):
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        with open(log, "ab") as out:
            out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
            out.flush()
            self.offset = out.tell()
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def output(self) -> str:
        """What this run has written so far."""
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")

    def wait_for_output(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None:
                pytest.fail(f"{self.log.name}: exited {self.proc.returncode}:\n{self.output()[-4000:]}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"{self.log.name}: no {text!r} after {timeout:.0f} s:\n{self.output()[-4000:]}")
            time.sleep(0.1)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to the group (warm shutdown), SIGKILL if it lingers; children are never left behind."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def server_env(browser_requirements, django_db_setup):
    """The environment of the server and the workers: this session's test database, Redis, no DEBUG."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DATABASE_URL=_database_url(connection.settings_dict),
        REDIS_URL=settings.REDIS_URL,
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        CELERY_TASK_ALWAYS_EAGER="0",
        CHANNEL_LAYER="redis",
        SECRET_KEY=settings.SECRET_KEY,  # sessions made here are valid there
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DEBUG="0",
        PORTAL_HTTPS="0",
        PORTAL_DOMAIN_TYPE="qemu",  # lab guests are TCG
        PORTAL_CONSOLE_RELAY=f"127.0.0.1:{free_port()}",  # where ``console_relay`` listens, when a test starts it
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="session")
def static_root(server_env, tmp_path_factory):
    """collectstatic once per session: with DEBUG=0 WhiteNoise serves STATIC_ROOT only."""
    root = tmp_path_factory.mktemp("static")
    env = {**server_env, "STATIC_ROOT": str(root)}
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(f"collectstatic failed:\n{result.stdout}\n{result.stderr}", pytrace=False)
    return root


@contextlib.contextmanager
def daphne_serving(env: dict, log: Path, *, port: int | None = None, args=()):
    """Daphne serving portal.asgi:application on 127.0.0.1 with ``env`` until the block ends; yields its
    base URL (no trailing slash) once /healthz answers, or fails the test with the server's output."""
    port = port or free_port()
    argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), *args]
    server = Process([*argv, "portal.asgi:application"], env=env, log=log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_healthz(base_url, exited=lambda: server.proc.poll() is not None, output=server.output)
        yield base_url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def asgi_server(server_env, static_root):
    """Daphne serving portal.asgi:application on 127.0.0.1; yields its base URL (no trailing slash)."""
    env = {**server_env, "STATIC_ROOT": str(static_root)}
    with daphne_serving(env, ARTIFACTS / "daphne.log", args=("--access-log", "-")) as base_url:
        yield base_url


class ConsoleRelay:
    """``manage.py console_relay`` as its own process, as it runs beside a real host's worker."""

    def __init__(self, address: str, env: dict):
        self.address, self.env, self.process = address, env, None
        argv = [sys.executable, "manage.py", "console_relay", "--listen", address, "--uri", "qemu:///system"]
        self.argv = [*argv, "--hosts", ",".join(CONSOLE_LAB_HOSTS)]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.proc.poll() is None

    def start(self) -> None:
        self.process = Process(self.argv, env=self.env, log=ARTIFACTS / "relay.log")
        self.process.wait_for_output("console relay listening", 30)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture(scope="session")
def console_relay(server_env):
    """The console relay on the server's PORTAL_CONSOLE_RELAY, serving ``CONSOLE_LAB_HOSTS`` through
    qemu:///system, with the grant key derived from the server's SECRET_KEY (a ``ConsoleRelay``)."""
    relay = ConsoleRelay(server_env["PORTAL_CONSOLE_RELAY"], server_env)
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


@pytest.fixture
def celery_worker_for(server_env):
    """``celery_worker_for(host)`` starts a real worker on that host's queue (waits until it is ready);
    every worker started is stopped at teardown."""
    started: list[Process] = []

    def start(host, *, ready_timeout: float = 60.0) -> Process:
        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(host.queue)
        name = f"{host.name}-{uuid.uuid4().hex[:4]}@browser"
        argv = [sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", host.queue, "-c", "1", "-n", name]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]
        worker = Process(argv, env=server_env, log=ARTIFACTS / f"celery-{host.queue}.log")
        started.append(worker)
        worker.wait_for_output(" ready.", ready_timeout)
        return worker

    yield start
    for worker in reversed(started):
        worker.stop()


@pytest.fixture(scope="package")
def browser(browser_requirements):
    """Headless Debian Chromium through Playwright's sync API, for this package's tests.

    Package-scoped rather than session-scoped: while it is open an asyncio loop runs in this thread,
    which would break the async and ``async_to_sync`` code of tests outside this package."""
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # the ORM in this thread, beside Playwright's loop
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def page(browser, request):
    """A page in a fresh context (no cookies), 1280x800. Its console and page errors go to
    test-artifacts/console.log; a failed test leaves a screenshot ``failed-<test>.png``."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    page = context.new_page()
    lines: list[str] = []
    page.on("console", lambda message: lines.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: lines.append(f"pageerror: {error}"))
    yield page
    report = request.node.stash.get(_CALL_REPORT, None)
    try:
        if report is not None and report.failed:
            _screenshot(page, f"failed-{request.node.name}")
    finally:
        context.close()
        if lines:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            with open(ARTIFACTS / "console.log", "a") as log:
                log.write("".join(f"{request.node.nodeid}: {line}\n" for line in lines))


@pytest.fixture
def login():
    """``login(page, base_url, username, password)`` signs in through the real form at /accounts/login/
    (staying on it when the page already shows it, so ``?next=`` is honoured)."""

    def sign_in(page, base_url: str, username: str, password: str):
        if not page.url.startswith(f"{base_url}/accounts/login/"):
            page.goto(f"{base_url}/accounts/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        with page.expect_navigation():
            page.click("form:has(#id_password) [type=submit]")
        if page.url.startswith(f"{base_url}/accounts/login/"):
            raise AssertionError(f"logging in as {username} failed: still on {page.url}")
        return page

    return sign_in


@pytest.fixture
def screenshot():
    """``screenshot(page, name)`` saves the full page as test-artifacts/screenshots/<name>.png."""
    return _screenshot


@pytest.fixture
def in_thread():
    """``in_thread(fn, *args, **kwargs)`` runs fn in a fresh thread and returns its result: code that
    publishes (``async_to_sync``) cannot run in this thread while Playwright's loop is open."""

    def run(fn, *args, **kwargs):
        def call():
            try:
                return fn(*args, **kwargs)
            finally:
                connections.close_all()

        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(call).result(timeout=120)

    return run
