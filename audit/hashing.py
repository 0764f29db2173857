"""The bytes an audit event's hash covers, and the hash: pure functions, no database.

``AuditEvent.save`` (models) links each new event with them; ``chain`` checks and signs the chain."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

GENESIS = "0" * 64
CANONICAL_FIELDS = (
    "seq",
    "occurred_at",
    "actor_id",
    "actor_username",
    "tenant_id",
    "tenant_name",
    "verb",
    "object_type",
    "object_id",
    "object_repr",
    "before",
    "after",
    "source_ip",
    "request_id",
    "prev_hash",
)


def when(value) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value)


def canonical(values: dict) -> bytes:
    """The exact bytes that are hashed: the canonical fields, sorted keys, no whitespace."""
    data = {name: values.get(name) for name in CANONICAL_FIELDS}
    data["occurred_at"] = when(data["occurred_at"])
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def event_hash(values: dict) -> str:
    return hashlib.sha256(canonical(values)).hexdigest()


def values_of(event) -> dict:
    return {name: getattr(event, name) for name in CANONICAL_FIELDS}
