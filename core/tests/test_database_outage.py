"""The database goes away for real (issue 15: PostgreSQL down for 10 s gave HTML 500 pages for API calls and
``/healthz`` showed the driver's connection error to anyone). The default connection is pointed at a place
where no database answers (a closed port on PostgreSQL, an unopenable file on SQLite), so the driver raises
as it would in an outage; then it is pointed back, and the very next request works."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
from django.db import connection
from django.test import Client

from allocations.tests.factories import make_template

API_PATHS = ["/api/desktops/", "/api/templates/", "/api/me/", "/api/tenants/", "/api/quota-requests/"]
MESSAGE = "The database is unavailable; try again in a moment."


@contextmanager
def database_away():
    """Make the default connection fail to connect until the block ends. The live connection is kept aside
    (on SQLite it holds the in-memory test database) and put back after."""
    kept = connection.connection
    settings = connection.settings_dict
    saved = {key: settings.get(key) for key in ("NAME", "HOST", "PORT")}
    connection.connection = None
    if connection.vendor == "sqlite":
        settings["NAME"] = "/nonexistent-directory/portal.sqlite3"
    else:
        settings["HOST"], settings["PORT"] = "127.0.0.1", "1"  # nothing listens on port 1
    try:
        yield
    finally:
        if connection.connection is not None:  # defensive: no connection should have opened
            connection.connection.close()
        settings.update(saved)
        connection.connection = kept


@pytest.fixture
def people(transactional_db):
    """A member signed in by token and an admin signed in by session, made while the database is up."""
    from allocations.tests.factories import make_membership, make_tenant, make_user
    from tenancy.roles import Role

    tenant = make_tenant("Acme Research", "acme")
    member = make_user("alice")
    make_membership(member, Role.TENANT_MEMBER, tenant)
    admin = make_user("padmin")
    make_membership(admin, Role.PLATFORM_ADMIN)
    make_template("Workstation", tenants=[tenant])
    return member, admin


def _token_client(api, user):
    return api.as_user(user)


def _session_client(user):
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def _assert_unavailable_json(response):
    assert response.status_code == 503, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert body == {"error": {"status": 503, "code": "database_unavailable", "message": MESSAGE}}


def test_api_answers_json_503_in_words_while_the_database_is_away_and_recovers_at_once(people, api):
    """Regression: PostgreSQL down → API errors came back as HTML 500 pages."""
    member, admin = people
    by_token = _token_client(api, member)
    by_session = _session_client(admin)
    with database_away():
        for path in API_PATHS:
            _assert_unavailable_json(by_token.get(path))
            _assert_unavailable_json(by_session.get(path))
        _assert_unavailable_json(by_token.post("/api/desktops/", {"template": 1, "duration_hours": 2}, format="json"))
        _assert_unavailable_json(by_session.get("/api/desktops/1/"))
    for path in API_PATHS:
        assert by_token.get(path).status_code == 200, path
        assert by_session.get(path).status_code == 200, path


def test_pages_answer_a_short_503_page_while_the_database_is_away(people):
    """A signed-in page needs the session (the database): 503 in words, not a 500 traceback page."""
    _, admin = people
    client = _session_client(admin)
    with database_away():
        response = client.get("/")
        assert response.status_code == 503
        assert response["Content-Type"].startswith("text/html")
        assert MESSAGE in response.content.decode()
        assert "nonexistent" not in response.content.decode()
        # an API path under a session that cannot be loaded: still JSON
        _assert_unavailable_json(client.get("/api/quotas/"))
    assert client.get("/").status_code == 200


def test_healthz_says_database_unavailable_without_the_drivers_words(people, caplog):
    """Regression: anonymous /healthz showed the database's connection error text."""
    client = Client()
    with database_away():
        response = client.get("/healthz")
    assert response.status_code == 503
    assert json.loads(response.content) == {"status": "error", "database": "database unavailable"}
    assert any("Database unavailable" in r.getMessage() for r in caplog.records)  # operators still learn why
    assert client.get("/healthz").status_code == 200


def test_an_outage_is_logged_on_one_line_without_a_traceback(people, caplog):
    _, admin = people
    client = _session_client(admin)
    with database_away():
        client.get("/")
    records = [r for r in caplog.records if r.name == "django.request" and getattr(r, "status_code", 0) == 503]
    assert records, [r.getMessage() for r in caplog.records]
    assert all(r.exc_info is None for r in records)
    assert "database unavailable" in records[0].getMessage()
