"""Exports under ASGI (issue 15): bytes go out as they are read, an error half-way ends the response at
once (logged, audited, a marker last), and a failed job shows words, never the database's text.

The ASGI tests drive the real application (``portal.asgi.application``) with asgiref's communicator, as
Daphne would; its request runs in its own thread with its own database connection, hence
``transaction=True``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from urllib.parse import urlencode

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.db import connection, transaction

from audit import services as audit
from audit.event_export import check_file
from audit.exports import Export
from audit.models import AuditEvent
from reports import exports
from reports.models import ExportJob

pytestmark = pytest.mark.django_db(transaction=True)

ROWS_PER_PART = 2_000  # ~220 KB of CSV: several 64 KiB pieces
SECRET_SQL = "SELECT secret_column FROM audit_exportjob"


def token_for(user) -> str:
    from tenancy.tokens import issue_token

    return issue_token(user, actor=user, name="asgi tests")[1]


def row(n: int) -> dict:
    return {"n": n, "text": "x" * 100}


def register_rows(monkeypatch, rows) -> None:
    """Register an export kind whose rows are ``rows()`` (the real Export, view and job around it)."""

    def build(user, fmt, filters):
        return Export(fmt, ["n", "text"], rows(), kind="test-rows", filters=filters)

    monkeypatch.setitem(exports.KINDS, "test-rows", build)


async def asgi_get(path: str, query: dict, token: str) -> ApplicationCommunicator:
    from portal.asgi import application

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": urlencode(query).encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Token {token}".encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    return communicator


async def rest_of(communicator: ApplicationCommunicator) -> list[dict]:
    """Body messages up to the last one (more_body false); the application must then have finished cleanly."""
    messages = []
    while True:
        message = await communicator.receive_output(timeout=5)
        messages.append(message)
        if not message.get("more_body", False):
            break
    await communicator.wait(timeout=5)  # re-raises anything the application raised
    return messages


@pytest.fixture
def test_route(settings):
    """``/api/exports/test-rows/``: the real export view, for the kind ``register_rows`` adds."""
    settings.ROOT_URLCONF = "reports.tests.rows_urls"
    return "/api/exports/test-rows/"


@pytest.mark.asyncio
async def test_under_asgi_the_first_bytes_go_out_before_the_rows_are_all_read(monkeypatch, auditor, test_route):
    """A 318k-event CSV took 58 s to its first byte under Daphne: Django read the sync iterator whole
    (``sync_to_async(list)``). Here the rows stop half-way until the client has its first piece."""
    produced = [0]
    release = threading.Event()

    def rows():
        for n in range(2 * ROWS_PER_PART):
            if n == ROWS_PER_PART:
                assert release.wait(timeout=10), "the client never got a first piece while rows were pending"
            produced[0] += 1
            yield row(n)

    register_rows(monkeypatch, rows)
    token = await sync_to_async(token_for)(auditor)
    communicator = await asgi_get(test_route, {"format": "csv"}, token)
    try:
        start = await communicator.receive_output(timeout=5)
        assert start["type"] == "http.response.start" and start["status"] == 200
        first = await communicator.receive_output(timeout=5)  # before: the whole body was read first: no piece
        assert first["more_body"] and first["body"].startswith(b"n,text\n0,xxx")
        assert produced[0] <= ROWS_PER_PART  # sent while half the rows were still to be read
    finally:
        release.set()
    messages = [first, *await rest_of(communicator)]
    data = b"".join(m.get("body", b"") for m in messages)
    assert data.count(b"\n") == 1 + 2 * ROWS_PER_PART and data.endswith(b"%d,%s\n" % (3999, b"x" * 100))
    job = await sync_to_async(ExportJob.objects.get)(kind="test-rows")
    assert job.status == "done" and job.manifest["rows"] == 2 * ROWS_PER_PART


def failing_rows():
    for n in range(ROWS_PER_PART):
        yield row(n)
    raise RuntimeError(f"near {SECRET_SQL!r}: the server's words, not the user's")


@pytest.mark.asyncio
async def test_under_asgi_an_error_half_way_ends_the_body_at_once_with_a_marker(
    monkeypatch, auditor, test_route, caplog
):
    """An error while the body streams (``since=9999-12-31T23:59:59-23:59`` overflowed in the database
    adapter) raised out of the application after the headers: Daphne could not answer 500 any more and
    left the response open for 300 s. Now the rows read so far go out, then a marker line, then the end."""
    register_rows(monkeypatch, failing_rows)
    token = await sync_to_async(token_for)(auditor)
    caplog.set_level(logging.ERROR)
    communicator = await asgi_get(test_route, {"format": "csv"}, token)
    start = await communicator.receive_output(timeout=5)
    assert start["status"] == 200
    messages = await asyncio.wait_for(rest_of(communicator), timeout=10)
    data = b"".join(m.get("body", b"") for m in messages)
    lines = data.decode().splitlines()
    sent = lines[1:-1]  # whole rows, in order: those the export had written out when it failed
    assert lines[0] == "n,text" and 0 < len(sent) <= ROWS_PER_PART
    assert sent == [f"{n},{'x' * 100}" for n in range(len(sent))]
    assert lines[-1].startswith(exports.CSV_FAILED_PREFIX + ",") and "incomplete" in lines[-1]
    assert "secret_column" not in data.decode()
    job = await sync_to_async(ExportJob.objects.get)(kind="test-rows")
    assert job.status == "failed" and job.manifest is None and job.error == exports.STREAM_FAILED
    event = await sync_to_async(AuditEvent.objects.get)(verb="export.failed")
    assert SECRET_SQL in event.after["detail"]  # for admins: the audit log
    assert any(SECRET_SQL in (r.exc_text or "") or r.exc_info for r in caplog.records)  # and the server log


def test_under_wsgi_an_error_half_way_ends_the_body_with_the_same_marker(monkeypatch, api, auditor, test_route):
    """The same failure through a sync server: the body ends with the marker instead of raising."""
    register_rows(monkeypatch, failing_rows)
    for fmt, ending in (("ndjson", {"error": exports.STREAM_FAILED}), ("json", None)):
        response = api.as_user(auditor).get(test_route, {"format": fmt})
        data = b"".join(response.streaming_content)
        if fmt == "ndjson":
            assert json.loads(data.splitlines()[-1]) == ending and len(data.splitlines()) == ROWS_PER_PART + 1
            # (NDJSON and JSON go out row by row: every row read before the error is in the body)
        else:
            whole = json.loads(data)  # the rows that went out, then the error in place of the manifest
            assert len(whole["rows"]) == ROWS_PER_PART and whole["error"] == exports.STREAM_FAILED
            assert "manifest" not in whole


@pytest.mark.asyncio
async def test_under_asgi_an_out_of_range_since_on_allocations_is_refused_before_the_body(auditor):
    """``/api/exports/allocations/?since=9999-12-31T23:59:59-23:59`` hung for 300 s under Daphne: the
    instant overflowed in the query, once the body had begun. It is refused now, in words, before any."""
    token = await sync_to_async(token_for)(auditor)
    communicator = await asgi_get(
        "/api/exports/allocations/", {"format": "csv", "since": "9999-12-31T23:59:59-23:59"}, token
    )
    start = await communicator.receive_output(timeout=5)
    messages = await asyncio.wait_for(rest_of(communicator), timeout=10)
    message = json.loads(b"".join(m.get("body", b"") for m in messages))["error"]["message"]
    assert start["status"] == 400 and message.startswith("since: ") and "out of range" in message


def events(n: int) -> None:
    for i in range(n):
        with transaction.atomic():
            audit.record("thing.changed", actor=None, object_type="test.thing", object_id=i, after={"i": i})


@pytest.mark.asyncio
@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
async def test_asgi_and_wsgi_stream_the_same_bytes_and_manifest(api, auditor, fmt):
    await sync_to_async(events)(30)
    query = {"format": fmt, "verb": "thing.changed"}
    wsgi = await sync_to_async(lambda: b"".join(api.as_user(auditor).get("/api/exports/audit-events/", query)))()
    token = await sync_to_async(token_for)(auditor)
    communicator = await asgi_get("/api/exports/audit-events/", query, token)
    start = await communicator.receive_output(timeout=5)
    assert start["status"] == 200
    asgi = b"".join(m.get("body", b"") for m in await rest_of(communicator))
    first, second = await sync_to_async(lambda: list(ExportJob.objects.order_by("id")))()
    assert first.manifest == second.manifest and second.status == "done"
    assert asgi == wsgi
    check = await sync_to_async(check_file)(asgi, fmt, second.manifest if fmt == "csv" else None)
    assert check.ok and check.rows == 30


@pytest.mark.asyncio
async def test_under_asgi_a_background_exports_file_goes_out_in_pieces_unchanged(auditor, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    await sync_to_async(events)(1500)  # ~700 KB of NDJSON

    def run_job():
        job = exports.queue_export(auditor, "audit-events", "ndjson", {})
        return exports.run_export_job(job.pk)

    job = await sync_to_async(run_job)()
    token = await sync_to_async(token_for)(auditor)
    communicator = await asgi_get(f"/api/export-jobs/{job.pk}/download/", {}, token)
    start = await communicator.receive_output(timeout=5)
    assert start["status"] == 200 and (b"content-length", str(len(open(job.path, "rb").read())).encode()) in [
        (k.lower(), v) for k, v in start["headers"]
    ]
    messages = await rest_of(communicator)
    assert len(messages) > 5 and all(m["more_body"] for m in messages[:-1])
    assert b"".join(m.get("body", b"") for m in messages) == open(job.path, "rb").read()


def test_a_failed_background_export_tells_the_person_in_words_and_keeps_the_sql_for_admins(
    monkeypatch, api, auditor, settings, tmp_path, caplog
):
    """An export job's ``error`` showed the database's text (SQL) to the person who asked."""
    settings.VAR_DIR = tmp_path

    def rows():
        with connection.cursor() as cursor:
            cursor.execute(SECRET_SQL)  # a real database error: no such column
        yield row(0)

    register_rows(monkeypatch, rows)
    job = exports.queue_export(auditor, "test-rows", "csv", {})
    caplog.set_level(logging.ERROR)
    with pytest.raises(Exception, match="secret_column"):  # the worker's task still fails, and logs it
        exports.run_export_job(job.pk)
    shown = api.as_user(auditor).get(f"/api/export-jobs/{job.pk}/").json()
    assert shown["status"] == "failed" and shown["error"] == exports.JOB_FAILED
    assert "secret_column" not in json.dumps(shown) and "SELECT" not in json.dumps(shown)
    event = AuditEvent.objects.get(verb="export.failed")
    assert "secret_column" in event.after["detail"] and event.object_id == str(job.pk)
    assert any(r.exc_info and "secret_column" in str(r.exc_info[1]) for r in caplog.records)
