"""Exports, usage reports and their access rules."""

import csv
import io
import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from allocations.tests.factories import make_template
from audit import services as audit
from audit.event_export import check_file
from audit.exports import neutralise, split_manifest, unneutralise
from audit.models import AuditEvent
from inventory.models import VGPUProfile
from reports.models import ExportJob
from reports.usage import charged_seconds, line_figures

pytestmark = pytest.mark.django_db


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def events(n=4, **extra):
    for i in range(n):
        with transaction.atomic():
            audit.record("thing.changed", actor=None, object_type="test.thing", object_id=i, after={"i": i}, **extra)


def fetch_manifest(api, user, response) -> bytes:
    """The manifest a streamed download points to (``X-Export-Manifest``), as a person downloads it."""
    url = response["X-Export-Manifest"]
    assert response["Link"] == f'<{url}>; rel="describedby"'
    got = api.as_user(user).get(url)
    assert got.status_code == 200 and got["Content-Type"] == "application/json", got.content
    assert got["Content-Disposition"].endswith('.manifest.json"')
    return got.content


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
def test_event_export_streams_with_a_manifest_that_verifies_offline(api, auditor, fmt, tmp_path, capsys):
    events(4)
    response = api.as_user(auditor).get("/api/exports/audit-events/", {"format": fmt, "verb": "thing.changed"})
    assert response.status_code == 200 and response.streaming
    data = body(response)
    manifest_file = fetch_manifest(api, auditor, response)  # kept once the last byte went out
    manifest = json.loads(manifest_file)
    assert manifest["rows"] == 4 and manifest["filter"] == {"verb": "thing.changed"}
    assert manifest["first_hash"] == AuditEvent.objects.filter(verb="thing.changed").order_by("seq").first().hash
    if fmt == "csv":
        assert b"#manifest" not in data  # pure data: the manifest is beside it
    else:
        assert split_manifest(data, fmt)[1] == manifest  # JSON and NDJSON still carry theirs inside
    assert check_file(data, fmt, manifest).ok
    path = tmp_path / f"events.{fmt}"
    path.write_bytes(data)
    (tmp_path / f"events.{fmt}.manifest.json").write_bytes(manifest_file)
    call_command("verify_export", str(path))  # finds events.<fmt>.manifest.json beside it
    assert "OK: events." + fmt + ": 4 audit-events rows" in capsys.readouterr().out
    path.write_bytes(data.replace(b"thing.changed", b"thing.forged", 1))
    with pytest.raises(CommandError, match="does not verify"):
        call_command("verify_export", str(path))
    assert AuditEvent.objects.filter(verb="export.started").count() == 1


def test_csv_neutralises_formulas_and_reads_back():
    for value in ["=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1)", "\tx", "'quoted", "plain"]:
        assert unneutralise(neutralise(value)) == value
        assert not neutralise(value).startswith(("=", "+", "-", "@", "\t")) or False
    assert neutralise("=1+1") == "'=1+1" and neutralise("plain") == "plain"


def test_formula_in_an_event_is_neutralised_in_the_csv_and_the_file_still_verifies(api, auditor):
    with transaction.atomic():
        audit.record(
            "thing.changed",
            actor=None,
            object_type="test.thing",
            object_repr='=HYPERLINK("http://x")',
            tenant_name="@evil",
            after={"note": "+1"},
        )
    response = api.as_user(auditor).get("/api/exports/audit-events/", {"format": "csv", "verb": "thing.changed"})
    data = body(response)
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert rows[0]["object_repr"] == '\'=HYPERLINK("http://x")' and rows[0]["tenant_name"] == "'@evil"
    assert check_file(data, "csv", json.loads(fetch_manifest(api, auditor, response))).ok


def test_only_operators_export_events_and_members_get_their_own_history(
    api, auditor, tenant_member, outsider, lab, tenant, other_tenant, catalog, run_tasks
):
    from allocations.services.request import request_desktop

    lab("lab-a40=A40x2")
    for t in (tenant, other_tenant):
        t.quota.max_framebuffer_mib = 100000
        t.quota.save()
    template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant, other_tenant])
    with run_tasks():
        request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=1)
        request_desktop(actor=outsider, template_id=template.pk, duration_hours=1)
    assert api.as_user(tenant_member).get("/api/exports/audit-events/", {"format": "csv"}).status_code == 403
    mine = json.loads(body(api.as_user(tenant_member).get("/api/exports/allocations/", {"format": "json"})))
    assert [r["user"] for r in mine["rows"]] == ["alice"]
    assert mine["manifest"]["rows"] == 1 and mine["rows"][0]["gpu_share"] == "0.166667"
    everything = json.loads(body(api.as_user(auditor).get("/api/exports/allocations/", {"format": "json"})))
    assert sorted(r["user"] for r in everything["rows"]) == ["alice", "mallory"]
    bad = api.as_user(auditor).get("/api/exports/audit-events/", {"format": "xlsx"})
    assert bad.status_code == 400 and "format must be one of" in bad.json()["error"]["message"]


def test_background_export_job_writes_the_file_and_downloads_are_audited(api, auditor, run_tasks, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    already = AuditEvent.objects.count()  # the fixtures' own (the auditor's membership)
    events(3)
    with run_tasks():
        created = api.as_user(auditor).post(
            "/api/export-jobs/", {"kind": "audit-events", "format": "ndjson"}, format="json"
        )
    assert created.status_code == 202
    job = ExportJob.objects.get()
    assert job.status == "done" and job.rows == already + 3 + 1  # the queued-export event is in the log too
    download = api.as_user(auditor).get(f"/api/export-jobs/{job.pk}/download/")
    assert download.status_code == 200
    assert check_file(b"".join(download.streaming_content), "ndjson").ok
    assert AuditEvent.objects.filter(verb="export.downloaded").count() == 1


def test_usage_report_equals_an_independent_recomputation_from_the_export(
    api, auditor, lab, tenant, tenant_member, catalog, run_tasks
):
    from allocations.models import Desktop
    from allocations.services.request import request_desktop

    lab("lab-a40=A40x2")
    tenant.quota.max_desktops = 10
    tenant.quota.max_framebuffer_mib = 10**6
    tenant.quota.save()
    small = make_template("Small", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant])
    big = make_template("Big", profile=VGPUProfile.objects.get(name="A40-24Q"), tenants=[tenant])
    with run_tasks():
        ids = [request_desktop(actor=tenant_member, template_id=t.pk, duration_hours=2).pk for t in (small, big, big)]
    month = datetime(2026, 3, 1, tzinfo=timezone.get_current_timezone())
    spans = [
        (month - timedelta(hours=5), month + timedelta(hours=3, minutes=7)),  # straddles the start
        (month + timedelta(days=3), month + timedelta(days=3, hours=1, seconds=13)),
        (month + timedelta(days=30, hours=20), None),
    ]  # still running past the end
    for pk, (started, ended) in zip(ids, spans, strict=True):
        Desktop.objects.filter(pk=pk).update(started_at=started, ended_at=ended)
    report = api.as_user(auditor).get("/api/usage/", {"period": "2026-03", "group_by": "profile"}).json()
    exported = json.loads(body(api.as_user(auditor).get("/api/exports/allocations/", {"format": "json"})))["rows"]

    start, end = month, datetime(2026, 4, 1, tzinfo=month.tzinfo)
    now = timezone.now()
    expected = {}
    for row in exported:
        started = datetime.fromisoformat(row["started_at"])
        ended = datetime.fromisoformat(row["ended_at"]) if row["ended_at"] else None
        seconds = charged_seconds(started, ended, start, end, now)
        gpu, fb = line_figures(Decimal(row["gpu_share"]), row["framebuffer_mib"], seconds)
        line = expected.setdefault(row["profile"], [0, 0, Decimal(0), Decimal(0)])
        line[0] += 1
        line[1] += seconds
        line[2] += gpu
        line[3] += fb
    got = {
        r["key"]: [r["desktops"], r["seconds"], Decimal(r["gpu_hours"]), Decimal(r["framebuffer_gib_hours"])]
        for r in report["rows"]
    }
    assert got == expected
    assert got["A40-8Q"][1] == 3 * 3600 + 7 * 60  # clipped at the month's start
    assert got["A40-24Q"][1] == 3600 + 13 + 4 * 3600  # one inside, one clipped at the month's end
    csv_text = (
        api.as_user(auditor)
        .get("/api/usage/", {"period": "2026-03", "group_by": "tenant", "format": "csv"})
        .content.decode()
    )
    lines = csv_text.splitlines()
    assert len(lines) == 2 and lines[1].startswith("acme,3,"), csv_text
    assert api.as_user(tenant_member).get("/api/usage/").status_code == 403


def test_verification_endpoint_is_audited_and_reports_tampering(api, auditor, tenant_member):
    events(3)
    response = api.as_user(auditor).post("/api/audit-verifications/")
    assert response.status_code == 200 and response.json()["ok"] is True
    assert AuditEvent.objects.filter(verb="audit.verified", actor_id=auditor.pk).count() == 1
    assert api.as_user(tenant_member).post("/api/audit-verifications/").status_code == 403


def test_report_pages(client, auditor, tenant_member):
    events(2)
    client.force_login(auditor)
    assert "Usage" in client.get("/reports/usage/?period=2026-11").content.decode()
    page = client.post("/reports/verify/").content.decode()
    assert "The log verifies" in page
    assert "Export this selection" in client.get("/audit/").content.decode()
    client.force_login(tenant_member)
    assert client.get("/reports/usage/").status_code == 403
    assert client.get("/exports/").status_code == 200


# --- a CSV is pure data; its manifest lies beside it (issue 14) ---


def assert_pure_csv(data: bytes) -> list[list[str]]:
    """Every record after the header has the header's columns: nothing a spreadsheet would read as a row
    of data that is not one (the old last line ``#manifest,{json}`` split into dozens of cells)."""
    records = list(csv.reader(io.StringIO(data.decode())))
    header, rows = records[0], records[1:]
    assert rows, "no rows"
    assert [len(r) for r in rows] == [len(header)] * len(rows), [r[:2] for r in rows if len(r) != len(header)]
    assert not any(r[0].startswith("#") for r in rows)
    return records


def test_streamed_csv_exports_are_pure_data_with_the_same_columns_on_every_line(
    api, auditor, tenant_member, lab, tenant, catalog, run_tasks
):
    """Reproduction: GET /api/exports/audit-events/?format=csv ended with an unquoted ``#manifest,{json}``
    row that spreadsheets read as data."""
    from allocations.services.request import request_desktop

    lab("lab-a40=A40x1")
    tenant.quota.max_framebuffer_mib = 100000
    tenant.quota.save()
    template = make_template("CAD", profile=VGPUProfile.objects.get(name="A40-8Q"), tenants=[tenant])
    with run_tasks():
        request_desktop(actor=tenant_member, template_id=template.pk, duration_hours=1)
    with transaction.atomic():
        audit.record("thing.changed", actor=None, object_type="t", object_repr='a, "quoted"\nvalue', after={"k": "a,b"})
    for user, url in [
        (auditor, "/api/exports/audit-events/"),
        (auditor, "/api/exports/allocations/"),
        (tenant_member, "/api/exports/allocations/"),
    ]:
        response = api.as_user(user).get(url, {"format": "csv"})
        data = body(response)
        assert_pure_csv(data)
        manifest = json.loads(fetch_manifest(api, user, response))
        assert manifest["rows"] == data.decode().count("\n") - 1 - ("audit" in url)  # one cell holds a newline
        assert manifest["body_sha256"] == __import__("hashlib").sha256(data).hexdigest()


def test_background_csv_job_keeps_its_manifest_beside_the_file_and_verifies_offline(
    api, auditor, run_tasks, settings, tmp_path, capsys
):
    settings.VAR_DIR = tmp_path
    events(3)
    with run_tasks():
        created = api.as_user(auditor).post(
            "/api/export-jobs/", {"kind": "audit-events", "format": "csv"}, format="json"
        )
    job = ExportJob.objects.get(pk=created.json()["id"])
    assert job.status == "done"
    client = api.as_user(auditor)
    data = b"".join(client.get(f"/api/export-jobs/{job.pk}/download/").streaming_content)
    assert_pure_csv(data)
    sidecar = tmp_path / "exports" / f"{job.filename}.manifest.json"
    assert json.loads(sidecar.read_bytes()) == job.manifest
    got = client.get(f"/api/export-jobs/{job.pk}/download/", {"part": "manifest"})
    assert got.status_code == 200 and json.loads(got.content) == job.manifest
    assert client.get(f"/api/export-jobs/{job.pk}/download/", {"part": "everything"}).status_code == 400
    assert AuditEvent.objects.filter(verb="export.downloaded").count() == 1  # the manifest is no data

    call_command("verify_export", job.path)  # FILE.manifest.json beside it
    assert f"OK: {job.filename}: {job.rows} audit-events rows" in capsys.readouterr().out
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(sidecar.read_bytes())
    sidecar.unlink()
    with pytest.raises(CommandError, match="a CSV export is pure data: give its manifest"):
        call_command("verify_export", job.path)
    call_command("verify_export", job.path, "--manifest", str(elsewhere))
    assert "OK:" in capsys.readouterr().out
    forged = json.loads(elsewhere.read_bytes())
    forged["rows"] += 1
    elsewhere.write_text(json.dumps(forged))
    with pytest.raises(CommandError, match="does not verify"):
        call_command("verify_export", job.path, "--manifest", str(elsewhere))


def test_a_csv_written_before_the_manifest_moved_out_still_verifies(api, auditor, tmp_path, capsys):
    events(2)
    response = api.as_user(auditor).get("/api/exports/audit-events/", {"format": "csv", "verb": "thing.changed"})
    data = body(response)
    manifest = json.loads(fetch_manifest(api, auditor, response))
    legacy = tmp_path / "old.csv"
    legacy.write_bytes(data + b"#manifest," + json.dumps(manifest).encode() + b"\n")
    call_command("verify_export", str(legacy))
    assert "OK: old.csv: 2 audit-events rows" in capsys.readouterr().out


def test_a_streamed_download_stopped_half_way_keeps_no_manifest(auditor):
    from reports import exports

    events(2)
    export = exports.build_export(auditor, "audit-events", "csv", {})
    job = exports.record_streamed(auditor, "audit-events", "csv", {})
    chunks = exports.stream_recording_manifest(export, job)
    next(chunks)
    chunks.close()  # the client went away
    job.refresh_from_db()
    assert job.status == "failed" and job.manifest is None and "stopped before its end" in job.error


def test_my_exports_page_offers_each_exports_manifest(api, auditor, client, run_tasks, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    events(1)
    body(api.as_user(auditor).get("/api/exports/audit-events/", {"format": "csv"}))
    with run_tasks():
        api.as_user(auditor).post("/api/export-jobs/", {"kind": "audit-events", "format": "csv"}, format="json")
    streamed, background = ExportJob.objects.order_by("id")
    client.force_login(auditor)
    page = client.get("/exports/").content.decode()
    for job in (streamed, background):
        assert f'/api/export-jobs/{job.pk}/download/?part=manifest">Manifest</a>' in page
    assert f'/api/export-jobs/{background.pk}/download/">Download</a>' in page
    assert f'/api/export-jobs/{streamed.pk}/download/">Download</a>' not in page
    gone = api.as_user(auditor).get(f"/api/export-jobs/{streamed.pk}/download/")
    assert gone.status_code == 404 and "?part=manifest" in gone.json()["error"]["message"]
