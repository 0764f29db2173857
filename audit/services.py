"""Writing audit events. Callers pass plain values; this module knows no other app."""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

from django.db import models, transaction

from audit import context
from audit.models import AuditEvent, object_type_of


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, models.Model):
        return value.pk
    return value


def snapshot(instance: models.Model, *, exclude: tuple[str, ...] = ()) -> dict:
    """The concrete field values of a row (foreign keys as ids, many-to-many as sorted ids).
    Bookkeeping timestamps (``auto_now``) are left out: the event has its own time."""
    data = {}
    for f in instance._meta.concrete_fields:
        if f.name in exclude or getattr(f, "auto_now", False):
            continue
        data[f.attname if f.is_relation else f.name] = _jsonable(f.value_from_object(instance))
    if instance.pk is not None:
        for f in instance._meta.many_to_many:
            if f.name not in exclude:
                data[f.name] = sorted(getattr(instance, f.name).values_list("pk", flat=True))
    return data


def record(
    verb: str,
    *,
    actor,
    object_type: str,
    object_id: Any = "",
    object_repr: str = "",
    tenant_id: int | None = None,
    tenant_name: str = "",
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEvent:
    """Append one event. Must run inside the transaction of the change it records,
    so the change and its record commit or vanish together."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError(f"audit.record({verb!r}) must run inside the transaction of the change it records.")
    ctx = context.current()
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    event = AuditEvent(
        actor_id=actor.pk if authenticated else None,
        actor_username=actor.get_username() if authenticated else "",
        tenant_id=tenant_id,
        tenant_name=tenant_name,
        verb=verb,
        object_type=object_type,
        object_id=str(object_id) if object_id is not None else "",
        object_repr=str(object_repr)[:200],
        before=_jsonable(before) if before is not None else None,
        after=_jsonable(after) if after is not None else None,
        source_ip=ctx.source_ip,
        request_id=ctx.request_id,
    )
    event.save(force_insert=True)  # AuditEvent.save links it into the chain
    return event


def record_row(
    verb: str,
    instance: models.Model,
    *,
    actor,
    tenant: models.Model | None = None,
    text: str | None = None,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEvent:
    """Append one event about a row: its type, id and text (``str(instance)`` unless ``text`` is
    given), and the tenant it belongs to."""
    return record(
        verb,
        actor=actor,
        object_type=object_type_of(instance),
        object_id=instance.pk,
        object_repr=str(instance) if text is None else text,
        tenant_id=tenant.pk if tenant is not None else None,
        tenant_name=str(tenant) if tenant is not None else "",
        before=before,
        after=after,
    )


def verify_chain(*, actor, via: str, anchor_path=None):
    """Walk the chain (audit.chain.verify, against the anchor or ``anchor_path``, a copy of it) and record
    that it was done, by whom, and the outcome."""
    from audit import chain

    result = chain.verify(anchor_path=anchor_path)
    with transaction.atomic():
        record(
            "audit.verified",
            actor=actor,
            object_type="audit.chain",
            object_id=result.head_seq,
            object_repr=via,
            after={"ok": result.ok, "events": result.events, "problems": len(result.problems)},
        )
    return result
