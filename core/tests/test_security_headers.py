"""The Content-Security-Policy every response carries, and 403s logged on one line (issue 15)."""

from __future__ import annotations

import logging
import re
import sys

import pytest
from django.test import Client

from core.logs import OneLineRefusals

pytestmark = pytest.mark.django_db


def _policy(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in header.split(";"))


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_pages_carry_a_policy_without_inline_scripts(platform_admin):
    """Regression: no Content-Security-Policy header at all."""
    response = _signed_in(platform_admin).get("/")
    assert response.status_code == 200
    policy = _policy(response)
    assert policy["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval'
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"
    assert "ws://testserver" in policy["connect-src"] and "wss://testserver" in policy["connect-src"]
    assert "data:" in policy["img-src"]  # noVNC's cursor


def test_login_page_and_api_answers_carry_it_too(api, tenant_member):
    assert "script-src 'self'" in Client().get("/accounts/login/")["Content-Security-Policy"]
    assert "default-src 'self'" in api.as_user(tenant_member).get("/api/me/")["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/", "/accounts/login/", "/desktops/new/", "/api/docs/"])
def test_our_pages_hold_no_inline_script_or_event_handler(tenant_member, path):
    """What the policy refuses must not be what the pages rely on: every <script> has a src (or is JSON
    data), and no element has an on…= handler."""
    html = _signed_in(tenant_member).get(path).content.decode()
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", html)


def test_the_api_docs_load_their_start_up_script_as_a_file(tenant_member):
    """Swagger UI's own page inlines its start-up script; the split view serves it from ?script."""
    client = _signed_in(tenant_member)
    assert "?script" in client.get("/api/docs/").content.decode()
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and "javascript" in script["Content-Type"]


def test_redoc_alone_may_run_its_inline_start_up_script(tenant_member):
    response = _signed_in(tenant_member).get("/api/redoc/")
    assert _policy(response)["script-src"] == "'self' 'unsafe-inline'"


def test_a_403_is_logged_on_one_line_without_a_traceback(tenant_member, caplog):
    """Regression: 403s were logged with their full traceback."""
    caplog.set_level(logging.WARNING, logger="django.request")
    response = _signed_in(tenant_member).get("/audit/")
    assert response.status_code == 403
    records = [r for r in caplog.records if r.name == "django.request"]
    assert records and all(r.exc_info is None for r in records)
    assert "Forbidden" in records[0].getMessage()


def test_server_errors_keep_their_traceback():
    try:
        raise RuntimeError("a real bug")
    except RuntimeError:
        record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    record.status_code = 500
    assert OneLineRefusals().filter(record) and record.exc_info is not None
