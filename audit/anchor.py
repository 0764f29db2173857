"""The anchor: every signed checkpoint also goes, as one JSON line, where the database's administrators
cannot rewrite it, and verification reads it back (docs/audit.md, "The anchor").

``PORTAL_AUDIT_ANCHOR`` chooses where:

- a file path: each line is appended through a descriptor opened with ``O_APPEND`` and fsynced. Put it on
  a volume the database's administrators cannot reach and mark it ``chattr +a`` (append-only even for
  root without CAP_LINUX_IMMUTABLE);
- ``syslog``: one line per checkpoint to the local syslog/journald (tag ``portal-audit``), forwarded to a
  log host; verification then reads the lines copied from there (``verify_audit --anchor FILE``);
- ``off``: no anchor (verification says what that leaves undetected);
- empty (the default for a first run): ``var/audit-anchor.<database>.log`` beside the portal's data,
  named for its database, so a second database (tests, a fresh start) never reads another's lines.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection

KIND = "portal-audit-checkpoint"
SYSLOG = "syslog"
OFF = "off"
_TAIL_BYTES = 64 * 1024


class AnchorError(Exception):
    """The anchor could not be written: the checkpoint is not signed (its transaction rolls back)."""


def destination() -> Path | str | None:
    """A file path, ``SYSLOG``, or None when the anchor is switched off."""
    configured = str(getattr(settings, "PORTAL_AUDIT_ANCHOR", "") or "").strip()
    if configured.lower() == OFF:
        return None
    if configured.lower() == SYSLOG:
        return SYSLOG
    if configured:
        return Path(configured)
    name = Path(str(connection.settings_dict.get("NAME") or "default")).name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{connection.vendor}.{name}").strip("._") or "default"
    return Path(settings.VAR_DIR) / f"audit-anchor.{slug}.log"


def describe(where=None) -> str:
    where = destination() if where is None else where
    return {None: "no anchor (PORTAL_AUDIT_ANCHOR=off)", SYSLOG: "syslog (tag portal-audit)"}.get(where, str(where))


def line_of(record: dict) -> str:
    return json.dumps({"kind": KIND, **record}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def append(record: dict) -> None:
    """Write one signed checkpoint to the anchor; raise AnchorError when it cannot be written."""
    where = destination()
    if where is None:
        return
    line = line_of(record)
    if where == SYSLOG:
        import syslog

        syslog.openlog("portal-audit", 0, syslog.LOG_AUTH)
        syslog.syslog(syslog.LOG_NOTICE, line)
        return
    try:
        if not str(getattr(settings, "PORTAL_AUDIT_ANCHOR", "") or "").strip():
            where.parent.mkdir(parents=True, exist_ok=True)  # only the default; never create another volume's path
        fd = os.open(where, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise AnchorError(f"cannot append to the audit anchor {where}: {exc}") from exc


@dataclass
class Anchor:
    """What an anchor holds: the checkpoint records in the order they were written, and unreadable lines."""

    source: str
    readable: bool = True
    records: list[dict] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def _parse(text: str, anchor: Anchor) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        if KIND not in line:
            continue  # syslog copies may hold other lines
        start = line.find("{")
        try:
            record = json.loads(line[start:]) if start >= 0 else None
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or record.get("kind") != KIND:
            anchor.unreadable.append(f"line {number}")
            continue
        anchor.records.append(record)


def read(path: str | Path | None = None) -> Anchor | None:
    """The anchor's records: from ``path`` when given (a copy from the log host), else from the configured
    file. None when there is no anchor; ``readable`` False when it is syslog and no copy was given."""
    where = Path(path) if path else destination()
    if where is None:
        return None
    if where == SYSLOG:
        return Anchor(source=describe(where), readable=False)
    anchor = Anchor(source=str(where))
    try:
        _parse(where.read_text(encoding="utf-8", errors="replace"), anchor)
    except FileNotFoundError:
        pass  # an empty anchor: verification compares the database against nothing, and says so
    return anchor


def last_record() -> dict | None:
    """The latest checkpoint in the configured anchor file (its tail only), or None (empty, syslog, off)."""
    where = destination()
    if where is None or where == SYSLOG:
        return None
    try:
        with open(where, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - _TAIL_BYTES))
            tail = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    anchor = Anchor(source=str(where))
    _parse(tail.split("\n", 1)[-1] if len(tail) >= _TAIL_BYTES else tail, anchor)
    return anchor.records[-1] if anchor.records else None
