"""Exporting audit events, and checking an exported file offline."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field

from audit import hashing
from audit.exports import Export, split_manifest, unneutralise

COLUMNS = ["id", *hashing.CANONICAL_FIELDS, "hash"]  # id, seq, …, prev_hash, hash


def event_rows(queryset):
    """Rows in chain order, with occurred_at in the chain's canonical form, read in chunks."""
    for row in queryset.order_by("seq").values(*COLUMNS).iterator(chunk_size=2000):
        row["occurred_at"] = hashing.when(row["occurred_at"])
        yield row


def export_events(queryset, fmt: str, filters: dict) -> Export:
    return Export(
        fmt,
        COLUMNS,
        event_rows(queryset.filter(seq__isnull=False)),
        kind="audit-events",
        filters=filters,
        chain_field="hash",
    )


@dataclass
class FileCheck:
    rows: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


_INTS = ("id", "seq", "actor_id", "tenant_id")
_NULLABLE = ("actor_id", "tenant_id", "source_ip", "before", "after")


def _typed(row: dict) -> dict:
    out = dict(row)
    for name in _NULLABLE:
        if out.get(name) == "":
            out[name] = None
    for name in _INTS:
        if out.get(name) not in (None, ""):
            out[name] = int(out[name])
    for name in ("before", "after"):
        if isinstance(out.get(name), str):
            out[name] = json.loads(out[name])
    return out


def _rows(body: bytes, fmt: str):
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(body.decode()))
        for row in reader:
            yield _typed({k: unneutralise(v) for k, v in row.items()})
    elif fmt == "ndjson":
        for line in body.decode().splitlines():
            if line.strip():
                yield json.loads(line)
    else:
        yield from json.loads(body.decode() + '"manifest": null}')["rows"]


def check_file(data: bytes, fmt: str, manifest: dict | None = None) -> FileCheck:
    """Offline: the body matches the manifest's digest and count, every event matches its own hash, and
    consecutive positions link up; the first and last hashes match the manifest. A CSV's manifest is the
    one beside it (``manifest``); JSON and NDJSON carry theirs."""
    result = FileCheck()
    body, manifest = split_manifest(data, fmt, manifest)
    if hashlib.sha256(body).hexdigest() != manifest["body_sha256"]:
        result.problems.append("the file's body does not match the manifest's SHA-256 (it was changed)")
    previous = None
    first = last = None
    for row in _rows(body, fmt):
        result.rows += 1
        if hashing.event_hash(row) != row["hash"]:
            result.problems.append(f"event id {row['id']} (seq {row['seq']}) does not match its hash")
        if previous and row["seq"] == previous["seq"] + 1 and row["prev_hash"] != previous["hash"]:
            result.problems.append(f"event seq {row['seq']} does not link to seq {previous['seq']}")
        first = first or row["hash"]
        last = row["hash"]
        previous = row
    if result.rows != manifest["rows"]:
        result.problems.append(f"the manifest says {manifest['rows']} rows, the file holds {result.rows}")
    if (first, last) != (manifest.get("first_hash"), manifest.get("last_hash")):
        result.problems.append("first/last hashes differ from the manifest")
    return result
