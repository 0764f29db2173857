"""Integration tier (issue 19): the web tier beyond one process. Two Daphne processes serve the portal
from one PostgreSQL database and one Redis (broker and channel layer), as docker-compose's replicated
``web`` behind its reverse proxy: a session made by signing in on one is honoured by the other, and a
live update published while one serves a request reaches a websocket connected to the other.

Needs PostgreSQL (DATABASE_URL: the daphnes share the test database) and Redis (REDIS_URL)."""

import http.cookiejar
import json
import re
import sys
import time
import urllib.parse
import urllib.request

import pytest
import redis
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection

from allocations.models import Desktop
from allocations.tests.brokers import free_port
from allocations.tests.factories import make_template
from allocations.tests.test_integration_worker import PortalProcess
from core.tests.http import wait_for_healthz
from inventory.models import VGPUProfile
from inventory.tests.factories import make_gpu, make_host
from tenancy.tokens import issue_token

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
PASSWORD = "pw-for-tests-1"  # the factories' password


def _redis_url() -> str:
    """The test Redis, on a database of its own (db 13), so queued tasks and channel groups stay apart."""
    parts = urllib.parse.urlsplit(settings.REDIS_URL)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/13", "", ""))


@pytest.fixture
def two_daphnes(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the web processes share the test database: needs PostgreSQL (DATABASE_URL)")
    url = _redis_url()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {url} (REDIS_URL)")
    servers = []
    try:
        for k in range(2):
            port = free_port()
            argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "portal.asgi:application"]
            env = {
                "REDIS_URL": url,
                "CHANNEL_LAYER": "redis",
                "SECRET_KEY": settings.SECRET_KEY,  # one key for every process: sessions and signatures
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "DEBUG": "0",
                "PORTAL_HTTPS": "0",
            }
            servers.append((f"http://127.0.0.1:{port}", PortalProcess(argv, tmp_path / f"daphne-{k}.log", url, **env)))
        for base, server in servers:
            wait_for_healthz(
                base, exited=lambda server=server: server.proc.poll() is not None, output=server.log.read_text
            )
        yield [base for base, _ in servers]
    finally:
        for _, server in servers:
            server.stop()
        redis.Redis.from_url(url).flushdb()


def sign_in(base: str, username: str) -> http.cookiejar.CookieJar:
    """Sign in through the login form of the server at ``base``; returns the cookies it set."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{base}/accounts/login/", timeout=10) as response:
        form = response.read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    body = urllib.parse.urlencode({"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token})
    request = urllib.request.Request(f"{base}/accounts/login/", data=body.encode(), headers={"Referer": base + "/"})
    with opener.open(request, timeout=10) as response:
        assert response.url.rstrip("/") == base, f"sign-in did not succeed: {response.url}"
    assert any(c.name == settings.SESSION_COOKIE_NAME for c in jar)
    return jar


def test_a_session_and_live_updates_work_across_two_web_processes(two_daphnes, catalog, tenant, tenant_member):
    first, second = two_daphnes
    from websockets.sync.client import connect

    profile = VGPUProfile.objects.get(name="A40-8Q")
    make_gpu(make_host("gpu-1"), current_profile=profile)
    template = make_template("CAD", profile=profile, tenants=[tenant], vcpus=2, memory_mib=2048)

    # the web processes run the deployment's password hashers, not the tests' fast one
    hasher = PBKDF2PasswordHasher()
    tenant_member.password = hasher.encode(PASSWORD, hasher.salt())
    tenant_member.save(update_fields=["password"])
    # the session made on the first process...
    jar = sign_in(first, tenant_member.username)
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    # ...is honoured by the second: its home page, not a redirect to sign in
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{second}/", timeout=10) as response:
        page = response.read().decode()
        assert response.url.rstrip("/") == second and "My desktops" in page

    ws_url = second.replace("http://", "ws://") + "/ws/live/"
    with connect(ws_url, origin=second, additional_headers={"Cookie": cookie}, open_timeout=10) as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello["event"] == "hello" and f"user.{tenant_member.pk}" in hello["data"]["groups"]
        # a desktop requested through the first process...
        _, key = issue_token(tenant_member, actor=tenant_member, name="web tier test")
        request = urllib.request.Request(
            f"{first}/api/desktops/",
            data=json.dumps({"template": template.pk, "duration_hours": 1, "name": "Across"}).encode(),
            headers={"Authorization": f"Token {key}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
            desktop_id = json.load(response)["id"]
        # ...is announced on the socket held by the second
        deadline = time.monotonic() + 10
        while True:
            event = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if event["event"] == "desktop.status" and event["data"]["id"] == desktop_id:
                break
    assert Desktop.objects.get(pk=desktop_id).name == "Across"
