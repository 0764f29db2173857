"""Where utilization samples live: PostgreSQL partitions (hourly raw, daily minute blocks) created ahead
and dropped whole for retention, and the packed form of an hour of minute averages.

On PostgreSQL ``inventory_rawsample`` and ``inventory_minuteblock`` are declaratively partitioned by
time (migration 0011); retention is ``DROP TABLE`` of partitions entirely past it, never a DELETE of
millions of rows. SQLite (the embedded default) keeps plain tables and deletes by age.
"""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction

RAW_TABLE = "inventory_rawsample"
MINUTE_TABLE = "inventory_minuteblock"
#: Raw partitions created ahead of now (a stopped beat does not stop ingest for a day).
RAW_AHEAD_H = 24
MINUTE_AHEAD_D = 2

# --- partitions (PostgreSQL) ------------------------------------------------------------------------------


def partitioned() -> bool:
    return connection.vendor == "postgresql"


#: The advisory lock key under which partitions are made (any constant this database's other users do not use).
PARTITION_LOCK = 0x7061727469  # "parti"


def _floor_hour(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _floor_day(t: datetime) -> datetime:
    return _floor_hour(t).replace(hour=0)


def _raw_name(start: datetime) -> str:
    return f"{RAW_TABLE}_p{start:%Y%m%d%H}"


def _minute_name(start: datetime) -> str:
    return f"{MINUTE_TABLE}_p{start:%Y%m%d}"


def partitions(table: str) -> dict[str, datetime]:
    """Existing partitions of a table: name -> start, from the names this module gives them."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
            [table],
        )
        names = [r[0] for r in cur.fetchall()]
    fmt = "%Y%m%d%H" if table == RAW_TABLE else "%Y%m%d"
    return {n: datetime.strptime(n.rsplit("_p", 1)[1], fmt).replace(tzinfo=UTC) for n in names}


def _create(table: str, name: str, start: datetime, end: datetime) -> None:
    with connection.cursor() as cur:
        cur.execute(
            f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{table}" FOR VALUES FROM (%s) TO (%s)', [start, end]
        )


def ensure_partitions(now: datetime, *, raw_back_h: int = 2) -> int:
    """Create the raw partitions of the hours from ``raw_back_h`` back to RAW_AHEAD_H ahead, and the minute
    partitions of the days from yesterday to MINUTE_AHEAD_D ahead. Returns how many were created."""
    if not partitioned():
        return 0
    with transaction.atomic():
        # One creator at a time (the rollup, a prune and every host worker whose sample fell outside the
        # partitions may all get here at once): CREATE TABLE IF NOT EXISTS ... PARTITION OF is not safe
        # concurrently on PostgreSQL (the loser fails with "already exists"). The lock ends with the
        # transaction; the partitions are read again once it is held.
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [PARTITION_LOCK])
        return _ensure(now, raw_back_h)


def _ensure(now: datetime, raw_back_h: int) -> int:
    made = 0
    have = partitions(RAW_TABLE)
    hour = _floor_hour(now)
    for i in range(-raw_back_h, RAW_AHEAD_H + 1):
        start = hour + timedelta(hours=i)
        if _raw_name(start) not in have:
            _create(RAW_TABLE, _raw_name(start), start, start + timedelta(hours=1))
            made += 1
    have = partitions(MINUTE_TABLE)
    day = _floor_day(now)
    for i in range(-1, MINUTE_AHEAD_D + 1):
        start = day + timedelta(days=i)
        if _minute_name(start) not in have:
            _create(MINUTE_TABLE, _minute_name(start), start, start + timedelta(days=1))
            made += 1
    return made


def drop_partitions_before(table: str, cutoff: datetime) -> int:
    """Drop every partition of ``table`` whose whole range lies before ``cutoff``; about how many rows went
    (the planner's estimate once analyzed: counting would read all that is being thrown away)."""
    span = timedelta(hours=1) if table == RAW_TABLE else timedelta(days=1)
    rows = 0
    for name, start in sorted(partitions(table).items(), key=lambda kv: kv[1]):
        if start + span <= cutoff:
            with connection.cursor() as cur:
                cur.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [name])
                estimate = cur.fetchone()[0]
                if estimate < 0:  # never analyzed (a small one): count it
                    cur.execute(f'SELECT count(*) FROM "{name}"')
                    estimate = cur.fetchone()[0]
                rows += estimate
                cur.execute(f'DROP TABLE "{name}"')
    return rows


# --- packed minute averages ---------------------------------------------------------------------------------
# One MinuteBlock holds one series' minutes of one hour: a bitmap of the minutes present, then each figure
# as a column (percentages in hundredths as uint16, MiB as uint32, °C and W in tenths), zlib-compressed.
# An idle vGPU's hour is a few dozen bytes; a busy board's a few hundred.

VGPU_FIELDS = ("sm_util", "mem_util", "fb_used_mib", "encoder_util", "decoder_util")
BOARD_FIELDS = (*VGPU_FIELDS, "fb_total_mib", "temperature_c", "power_w")
_CODEC = {  # field -> (struct code, scale); the largest value of the code means "none"
    "sm_util": ("H", 100),
    "mem_util": ("H", 100),
    "encoder_util": ("H", 100),
    "decoder_util": ("H", 100),
    "fb_used_mib": ("I", 1),
    "fb_total_mib": ("I", 1),
    "temperature_c": ("H", 10),
    "power_w": ("I", 10),
}
_NONE = {"H": 0xFFFF, "I": 0xFFFFFFFF}
_VERSION = 1


def _encode(code: str, scale: int, value) -> int:
    if value is None:
        return _NONE[code]
    return max(0, min(_NONE[code] - 1, round(value * scale)))


def pack_minutes(minutes: dict[int, dict]) -> bytes:
    """``{minute of the hour: {field: average}}`` -> bytes. Board fields are kept only when present."""
    order = sorted(minutes)
    board = any(minutes[m].get("fb_total_mib") is not None for m in order)
    fields = BOARD_FIELDS if board else VGPU_FIELDS
    bitmap = 0
    for m in order:
        bitmap |= 1 << m
    body = [struct.pack("<Q", bitmap)]
    for f in fields:
        code, scale = _CODEC[f]
        body.append(struct.pack(f"<{len(order)}{code}", *(_encode(code, scale, minutes[m].get(f)) for m in order)))
    return bytes([_VERSION, 1 if board else 0]) + zlib.compress(b"".join(body), 6)


def unpack_minutes(data: bytes) -> dict[int, dict]:
    data = bytes(data)
    if data[0] != _VERSION:
        raise ValueError(f"unknown minute block version {data[0]}")
    fields = BOARD_FIELDS if data[1] else VGPU_FIELDS
    raw = zlib.decompress(data[2:])
    (bitmap,) = struct.unpack_from("<Q", raw)
    order = [m for m in range(60) if bitmap >> m & 1]
    out = {m: {} for m in order}
    offset = 8
    for f in fields:
        code, scale = _CODEC[f]
        values = struct.unpack_from(f"<{len(order)}{code}", raw, offset)
        offset += struct.calcsize(f"<{len(order)}{code}")
        for m, v in zip(order, values, strict=True):
            out[m][f] = None if v == _NONE[code] else (v if scale == 1 else v / scale)
    return out
