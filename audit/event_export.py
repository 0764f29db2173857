"""Exporting audit events, and checking an exported file offline.

An export of the whole log is contiguous: every position from the first to the last, in order, so
removing, reordering or inserting rows shows even before the signature is checked. Any filter (the
audit log's filters: verb, actor, tenant, object, request, since/until, …) selects only some events,
so such an export is marked non-contiguous (``non_contiguous_filters`` names the filters given), and
only the order of positions and the links between consecutive ones can be checked row by row; the
signed manifest (row count, first and last hash and position, body digest) covers the rest."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field

from audit import hashing
from audit.exports import Export, split_manifest, unneutralise
from audit.signing import manifest_problem

COLUMNS = ["id", *hashing.CANONICAL_FIELDS, "hash"]  # id, seq, …, prev_hash, hash


def event_rows(queryset):
    """Rows in chain order, with occurred_at in the chain's canonical form, read in chunks."""
    for row in queryset.order_by("seq").values(*COLUMNS).iterator(chunk_size=2000):
        row["occurred_at"] = hashing.when(row["occurred_at"])
        yield row


def export_events(queryset, fmt: str, filters: dict) -> Export:
    """``queryset`` is the log narrowed by ``filters``: any filter given makes the export non-contiguous."""
    return Export(
        fmt,
        COLUMNS,
        event_rows(queryset.filter(seq__isnull=False)),
        kind="audit-events",
        filters=filters,
        chain_field="hash",
        sequence_field="seq",
        narrowing=[name for name, value in filters.items() if value not in ("", None)],
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
        reader = csv.DictReader(io.StringIO(body.decode("utf-8-sig")))  # with or without a byte order mark
        for row in reader:
            yield _typed({k: unneutralise(v) for k, v in row.items()})
    elif fmt == "ndjson":
        for line in body.decode().splitlines():
            if line.strip():
                yield json.loads(line)
    else:
        yield from json.loads(body.decode() + '"manifest": null}')["rows"]


def check_file(data: bytes, fmt: str, manifest: dict | None = None, *, allow_unsigned: bool = False) -> FileCheck:
    """Offline: the manifest's signature is this deployment's and intact; the body matches its digest and
    count; every event matches its own hash; positions only increase, and consecutive ones link up; in a
    contiguous export no position is missing; the first and last hash and position match the manifest.
    A CSV's manifest is the one beside it (``manifest``); JSON and NDJSON carry theirs."""
    result = FileCheck()
    body, manifest = split_manifest(data, fmt, manifest)
    unsigned = manifest_problem(manifest, allow_unsigned=allow_unsigned)
    if unsigned:
        result.problems.append(unsigned)
    if hashlib.sha256(body).hexdigest() != manifest["body_sha256"]:
        result.problems.append("the file's body does not match the manifest's SHA-256 (it was changed)")
    contiguous = bool(manifest.get("contiguous"))
    previous = None
    first = last = None
    for row in _rows(body, fmt):
        result.rows += 1
        if hashing.event_hash(row) != row["hash"]:
            result.problems.append(f"event id {row['id']} (seq {row['seq']}) does not match its hash")
        if previous is None and contiguous and row["seq"] == 1 and row["prev_hash"] != hashing.GENESIS:
            result.problems.append("the first event (seq 1) does not start the chain")
        if previous is not None:
            _check_order(previous, row, contiguous, result)
        first = first or row
        last = row
        previous = row
    if result.rows != manifest["rows"]:
        result.problems.append(f"the manifest says {manifest['rows']} rows, the file holds {result.rows}")
    hashes = (first and first["hash"], last and last["hash"])
    if hashes != (manifest.get("first_hash"), manifest.get("last_hash")):
        result.problems.append("first/last hashes differ from the manifest")
    if "first_seq" in manifest and (first and first["seq"], last and last["seq"]) != (
        manifest["first_seq"],
        manifest["last_seq"],
    ):
        result.problems.append(
            f"the manifest covers seq {manifest['first_seq']}..{manifest['last_seq']}, the file "
            f"{first and first['seq']}..{last and last['seq']}"
        )
    return result


def _check_order(previous: dict, row: dict, contiguous: bool, result: FileCheck) -> None:
    seq, before = row["seq"], previous["seq"]
    if seq <= before:
        result.problems.append(f"event seq {seq} comes after seq {before}: rows were reordered or repeated")
    elif seq == before + 1 and row["prev_hash"] != previous["hash"]:
        result.problems.append(f"event seq {seq} does not link to seq {before}")
    elif seq > before + 1 and contiguous:
        result.problems.append(
            f"positions {before + 1}..{seq - 1} are missing from a contiguous export (rows were removed)"
        )
