"""verify_export against a forger who changes an exported file and recomputes the body digest in its
manifest (issue 15): the manifest is signed, and a contiguous export's positions are checked one by one."""

import hashlib
import json

import pytest
from django.core.management import CommandError, call_command

from audit.event_export import check_file, export_events
from audit.exports import MANIFEST_SUFFIX, Export, manifest_bytes, split_manifest
from audit.models import AuditEvent
from audit.tests.tampering import write

pytestmark = pytest.mark.django_db

SIGNATURE_BROKEN = (
    "the manifest's signature does not match: the manifest (digest, rows or filter) was changed after export"
)


def exported(fmt="ndjson", filters=None) -> tuple[list[dict], dict]:
    queryset = AuditEvent.objects.filter(**({"verb": filters["verb"]} if filters else {}))
    export = export_events(queryset, fmt, filters or {})
    data = b"".join(export)
    body, manifest = split_manifest(data, fmt, export.manifest())
    return [json.loads(line) for line in body.decode().splitlines()], manifest


def forge(rows: list[dict], manifest: dict, *, keep_signature=True) -> tuple[bytes, dict]:
    """The forger's NDJSON file: ``rows``, with the manifest's digest, count and first/last recomputed."""
    body = "".join(json.dumps(row) + "\n" for row in rows).encode()
    forged = dict(manifest, body_sha256=hashlib.sha256(body).hexdigest(), rows=len(rows))
    forged.update(first_hash=rows[0]["hash"], last_hash=rows[-1]["hash"])
    forged.update(first_seq=rows[0]["seq"], last_seq=rows[-1]["seq"])
    if not keep_signature:
        forged.pop("signature")
        forged.pop("key_id")
    return body + (json.dumps({"manifest": forged}) + "\n").encode(), forged


def test_a_whole_log_export_is_signed_and_contiguous_and_verifies(tmp_path, capsys):
    write(4)
    rows, manifest = exported()
    assert (manifest["contiguous"], manifest["non_contiguous_filters"]) == (True, [])
    assert (manifest["first_seq"], manifest["last_seq"], len(manifest["signature"])) == (1, 4, 64)
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"".join(export_events(AuditEvent.objects.all(), "ndjson", {})))
    call_command("verify_export", str(path))
    assert "4 audit-events rows match the signed manifest (filter {}, seq 1..4 without gaps)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("tamper", "row_problem"),
    [
        (lambda rows: rows[:2] + rows[3:], "positions 3..3 are missing from a contiguous export (rows were removed)"),
        (lambda rows: [rows[0], rows[2], rows[1], rows[3]], "event seq 2 comes after seq 3: rows were reordered"),
    ],
    ids=["row-removed", "rows-reordered"],
)
def test_removed_or_reordered_rows_with_a_recomputed_digest_are_caught(tamper, row_problem):
    """Before: verify_export recomputed nothing but checked the digest the forger had recomputed, and only
    linked rows whose positions were consecutive, so such a file verified."""
    write(4)
    rows, manifest = exported()
    data, _ = forge(tamper(rows), manifest)
    problems = check_file(data, "ndjson").problems
    assert problems[0].startswith(SIGNATURE_BROKEN)
    # without the signature, the positions alone give the removal or reordering away
    unsigned, _ = forge(tamper(rows), manifest, keep_signature=False)
    assert any(p.startswith(row_problem) for p in check_file(unsigned, "ndjson", allow_unsigned=True).problems)


def test_a_rewritten_row_with_its_hash_recomputed_is_caught_by_the_signature(tmp_path):
    """The last row is edited and its hash recomputed (nothing links to it), the manifest's digest and last
    hash too: every row checks out, only the signature does not."""
    from audit import hashing

    write(3)
    rows, manifest = exported()
    rows[-1]["after"] = {"n": "forged"}
    rows[-1]["hash"] = hashing.event_hash(rows[-1])
    data, _ = forge(rows, manifest)
    assert check_file(data, "ndjson").problems == [SIGNATURE_BROKEN]
    path = tmp_path / "events.ndjson"
    path.write_bytes(data)
    with pytest.raises(CommandError, match="does not verify"):
        call_command("verify_export", str(path))


def test_a_filtered_export_says_it_is_not_contiguous_and_is_still_protected_by_its_signature(capsys, tmp_path):
    write(2, verb="a.one")
    write(2, verb="b.two")
    write(1, verb="a.one")
    rows, manifest = exported(filters={"verb": "a.one"})
    assert [r["seq"] for r in rows] == [1, 2, 5]
    assert (manifest["contiguous"], manifest["non_contiguous_filters"]) == (False, ["verb"])
    assert check_file(*forge(rows, manifest)[:1], "ndjson").ok  # an untouched re-serialisation
    data, _ = forge(rows[:1] + rows[2:], manifest)
    assert check_file(data, "ndjson").problems == [SIGNATURE_BROKEN]
    unsigned, _ = forge(rows[:1] + rows[2:], manifest, keep_signature=False)
    assert check_file(unsigned, "ndjson", allow_unsigned=True).ok  # a filtered export may skip positions


def test_an_unsigned_or_foreign_manifest_is_not_trusted(settings, tmp_path, capsys):
    write(2)
    rows, manifest = exported()
    unsigned, _ = forge(rows, manifest, keep_signature=False)
    assert check_file(unsigned, "ndjson").problems[0].startswith("the manifest is not signed")
    path = tmp_path / "old.ndjson"
    path.write_bytes(unsigned)
    with pytest.raises(CommandError, match="does not verify"):
        call_command("verify_export", str(path))
    call_command("verify_export", str(path), "--allow-unsigned")
    assert "2 audit-events rows match the UNSIGNED manifest" in capsys.readouterr().out
    signed, _ = forge(rows, manifest)
    settings.PORTAL_AUDIT_EXPORT_KEY = "another deployment"
    assert check_file(signed, "ndjson").problems[0].startswith("the manifest was signed with another key")


def test_other_exports_are_signed_too(tmp_path, capsys):
    rows = [{"user": "alice", "hours": "1.5"}, {"user": "bob", "hours": "2"}]
    export = Export("csv", ["user", "hours"], iter(rows), kind="allocations", filters={"tenant": "acme"})
    data = b"".join(export)
    path = tmp_path / "allocations.csv"
    path.write_bytes(data)
    sidecar = tmp_path / f"allocations.csv{MANIFEST_SUFFIX}"
    sidecar.write_bytes(manifest_bytes(export.manifest()))
    call_command("verify_export", str(path))
    assert "OK: allocations.csv: 2 allocations rows match the signed manifest" in capsys.readouterr().out
    forged = data.replace(b"1.5", b"0.5")
    path.write_bytes(forged)
    sidecar.write_bytes(manifest_bytes(dict(export.manifest(), body_sha256=hashlib.sha256(forged).hexdigest())))
    with pytest.raises(CommandError, match="does not verify"):
        call_command("verify_export", str(path))
    assert SIGNATURE_BROKEN in capsys.readouterr().out
