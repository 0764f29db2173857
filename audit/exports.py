"""Streaming exports (CSV, JSON, NDJSON) with constant memory and a signed manifest for offline checks.

Rows come from an iterator; bytes go out as they are produced. Every export has a manifest:
what was asked (filter), how many rows, the first and last chain hash and position (for audit
events) and whether the rows are a contiguous stretch of the chain, and the SHA-256 of the body,
signed with ``PORTAL_AUDIT_EXPORT_KEY`` (``audit.signing``), so a file can be checked without the
database (``manage.py verify_export``) and a changed file cannot come with a recomputed digest.
A CSV is pure data (a header, then rows of the same columns), optionally after a UTF-8 byte order mark
(``bom``: spreadsheets then read it as UTF-8, not their local code page): its manifest travels beside it,
as ``<file>.manifest.json`` (``manifest_bytes``), its body_sha256 covering the whole file. JSON
and NDJSON also carry it inside, at their end (a ``manifest`` key after ``rows``; a last
``{"manifest": …}`` line), their digest covering everything before it.

Spreadsheet formula injection: in CSV, a cell that starts with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return, or with ``'`` itself, gets a leading ``'``; readers remove
exactly one leading ``'`` to get the value back (``unneutralise``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime

from audit.signing import sign_manifest

FORMATS = {"csv": "text/csv", "json": "application/json", "ndjson": "application/x-ndjson"}
_DANGEROUS = ("=", "+", "-", "@", "\t", "\r", "'")
#: How exports before the manifest moved beside the CSV ended: still read, never written.
LEGACY_MANIFEST_PREFIX = "#manifest,"
#: The byte order mark a CSV for spreadsheets starts with (``bom``); readers skip it (``utf-8-sig``).
BOM = "\ufeff"
#: The manifest's file beside an export: ``events.csv`` → ``events.csv.manifest.json``.
MANIFEST_SUFFIX = ".manifest.json"


def neutralise(value: str) -> str:
    return "'" + value if value.startswith(_DANGEROUS) else value


def unneutralise(value: str) -> str:
    return value[1:] if value.startswith("'") else value


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    elif isinstance(value, datetime):
        value = value.isoformat()
    return neutralise(str(value))


def _json_default(value):
    return value.isoformat() if isinstance(value, datetime) else str(value)


class Export:
    """Stream ``rows`` (dicts with ``columns`` keys) in ``fmt``; ``chain_field`` names the column whose
    first and last values go into the manifest (the audit hash), ``sequence_field`` the position column
    (the audit seq: first and last go in too), and ``narrowing`` the filters that select only some rows
    of the sequence: none, and the manifest says the export is contiguous (every position from first to
    last, in order), which the verifier then checks."""

    def __init__(
        self,
        fmt: str,
        columns: list[str],
        rows: Iterable[dict],
        *,
        kind: str,
        filters: dict,
        chain_field: str | None = None,
        sequence_field: str | None = None,
        narrowing: Iterable[str] = (),
        bom: bool = False,
    ):
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        self.fmt, self.columns, self.rows, self.kind, self.filters = fmt, columns, rows, kind, filters
        self.chain_field, self.sequence_field, self.narrowing = chain_field, sequence_field, sorted(narrowing)
        self.bom = bom
        self.count = 0
        self.first = self.last = self.first_seq = self.last_seq = None
        self.digest = hashlib.sha256()

    @property
    def content_type(self) -> str:
        return FORMATS[self.fmt]

    def manifest(self) -> dict:
        manifest = {
            "kind": self.kind,
            "format": self.fmt,
            "filter": self.filters,
            "rows": self.count,
            "body_sha256": self.digest.hexdigest(),
            "columns": self.columns,
        }
        if self.bom and self.fmt == "csv":
            manifest["bom"] = True  # the body (and its digest) starts with EF BB BF
        if self.chain_field:
            manifest.update(first_hash=self.first, last_hash=self.last)
        if self.sequence_field:
            manifest.update(
                first_seq=self.first_seq,
                last_seq=self.last_seq,
                contiguous=not self.narrowing,
                non_contiguous_filters=self.narrowing,
            )
        return sign_manifest(manifest)

    def _out(self, text: str) -> bytes:
        data = text.encode()
        self.digest.update(data)
        return data

    def _track(self, row: dict) -> None:
        self.count += 1
        if self.chain_field:
            if self.first is None:
                self.first = row[self.chain_field]
            self.last = row[self.chain_field]
        if self.sequence_field:
            if self.first_seq is None:
                self.first_seq = row[self.sequence_field]
            self.last_seq = row[self.sequence_field]

    def __iter__(self) -> Iterator[bytes]:
        if self.fmt == "csv":
            yield from self._csv()
        elif self.fmt == "ndjson":
            for row in self.rows:
                self._track(row)
                yield self._out(
                    json.dumps({c: row[c] for c in self.columns}, default=_json_default, ensure_ascii=False) + "\n"
                )
            yield (json.dumps({"manifest": self.manifest()}) + "\n").encode()
        else:
            yield self._out('{"rows": [')
            for row in self.rows:
                self._track(row)
                prefix = "\n" if self.count == 1 else ",\n"
                yield self._out(
                    prefix + json.dumps({c: row[c] for c in self.columns}, default=_json_default, ensure_ascii=False)
                )
            yield self._out("\n],\n")
            yield ('"manifest": ' + json.dumps(self.manifest()) + "}\n").encode()

    def _csv(self) -> Iterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if self.bom:
            buffer.write(BOM)
        writer.writerow(self.columns)
        for row in self.rows:
            self._track(row)
            writer.writerow([_cell(row[c]) for c in self.columns])
            if buffer.tell() > 64 * 1024:
                yield self._out(buffer.getvalue())
                buffer.seek(0)
                buffer.truncate()
        yield self._out(buffer.getvalue())  # nothing follows: the manifest goes beside the CSV


def manifest_bytes(manifest: dict) -> bytes:
    """A manifest as its sidecar file (``<file>.manifest.json``) holds it."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def split_manifest(data: bytes, fmt: str, manifest: dict | None = None) -> tuple[bytes, dict]:
    """An export file → (the body the manifest's body_sha256 covers, the manifest). A CSV's manifest is
    the sidecar's, passed as ``manifest`` (a CSV written before the move that still ends with a
    ``#manifest,`` line is read as it was); JSON and NDJSON carry theirs."""
    if fmt == "csv":
        if manifest is not None:
            return data, manifest
        body, _, last = data.rstrip(b"\n").rpartition(b"\n")
        if not last.startswith(LEGACY_MANIFEST_PREFIX.encode()):
            raise ValueError(f"a CSV export is pure data: give its manifest (the {MANIFEST_SUFFIX} file beside it)")
        return body + b"\n", json.loads(last[len(LEGACY_MANIFEST_PREFIX) :])
    if fmt == "ndjson":
        body, _, last = data.rstrip(b"\n").rpartition(b"\n")
        return (body + b"\n" if body else b""), json.loads(last)["manifest"]
    marker = data.rfind(b'"manifest": ')
    if marker < 0:
        raise ValueError("no manifest in the JSON export")
    manifest = data[marker + len(b'"manifest": ') :].rstrip()
    return data[:marker], json.loads(manifest[:-1])  # drop the outer object's closing brace
