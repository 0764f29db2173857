"""CSV exports that open cleanly in spreadsheets (issue 16): a UTF-8 byte order mark on request, no
manifest row inside, the signed manifest beside the file, checked by ``verify_export``."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from audit import services as audit
from audit.event_export import check_file
from reports.models import ExportJob

pytestmark = pytest.mark.django_db
BOM = b"\xef\xbb\xbf"


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def events(n=3):
    for i in range(n):
        with transaction.atomic():
            audit.record("thing.changed", actor=None, object_type="test.thing", object_repr=f"Zürich № {i} — ✓")


def test_a_csv_with_a_byte_order_mark_and_its_sidecar_manifest_verifies_and_a_tampered_one_does_not(
    api, auditor, tmp_path, capsys
):
    events()
    client = api.as_user(auditor)
    response = client.get("/api/exports/audit-events/", {"format": "csv", "verb": "thing.changed", "bom": "1"})
    data = body(response)
    assert data.startswith(BOM) and not data.startswith(BOM * 2)
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert [r["object_repr"] for r in rows] == [f"Zürich № {i} — ✓" for i in range(3)]
    assert b"#manifest" not in data
    manifest = json.loads(client.get(response["X-Export-Manifest"]).content)
    assert manifest["bom"] is True and manifest["filter"] == {"verb": "thing.changed"}  # bom is no filter
    assert check_file(data, "csv", manifest).ok
    path = tmp_path / "events.csv"
    path.write_bytes(data)
    (tmp_path / "events.csv.manifest.json").write_bytes(json.dumps(manifest).encode())
    call_command("verify_export", str(path))
    assert "OK: events.csv: 3 audit-events rows match the signed manifest" in capsys.readouterr().out
    path.write_bytes(data.replace("Zürich № 1".encode(), "Zürich № 9".encode()))
    with pytest.raises(CommandError, match="does not verify"):
        call_command("verify_export", str(path))
    assert "does not match the manifest's SHA-256" in capsys.readouterr().out
    path.write_bytes(data[len(BOM) :])  # the mark removed: the digest covered it
    with pytest.raises(CommandError, match="does not verify"):
        call_command("verify_export", str(path))


def test_without_bom_a_csv_is_unchanged_and_its_manifest_says_nothing_of_a_mark(api, auditor):
    events(1)
    client = api.as_user(auditor)
    response = client.get("/api/exports/audit-events/", {"format": "csv", "bom": "0"})
    data = body(response)
    assert data.startswith(b"id,seq,")
    assert "bom" not in json.loads(client.get(response["X-Export-Manifest"]).content)
    # a whole-log export stays contiguous: bom=… is an option, not a filter that narrows it
    assert json.loads(client.get(response["X-Export-Manifest"]).content)["contiguous"] is True


def test_a_background_csv_job_keeps_the_bom_option_and_verifies_with_its_sidecar(
    api, auditor, run_tasks, settings, tmp_path, capsys, client
):
    settings.VAR_DIR = tmp_path
    events(2)
    client.force_login(auditor)
    with run_tasks():
        client.post("/exports/", {"kind": "audit-events", "format": "csv", "bom": "1"})  # the page's checkbox
    job = ExportJob.objects.get()
    assert job.status == "done" and job.filters == {"bom": "1"} and job.manifest["contiguous"] is True
    data = open(job.path, "rb").read()
    assert data.startswith(BOM)
    call_command("verify_export", job.path)
    assert f"OK: {job.filename}" in capsys.readouterr().out


def test_the_usage_csv_takes_the_byte_order_mark_too(api, auditor):
    plain = api.as_user(auditor).get("/api/usage/", {"format": "csv"}).content
    marked = api.as_user(auditor).get("/api/usage/", {"format": "csv", "bom": "1"}).content
    assert marked == BOM + plain and plain.startswith(b"tenant,")
