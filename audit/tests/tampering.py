"""What a database administrator can do to the audit trail: write around the portal, with the append-only
triggers switched off on PostgreSQL (a superuser can; SQLite has none)."""

import json

from django.db import connection, transaction

from audit import hashing
from audit import services as audit
from audit.models import AuditEvent

TABLES = ("audit_auditevent", "audit_checkpoint", "audit_chainhead")


def write(n: int, verb: str = "thing.changed"):
    for i in range(n):
        with transaction.atomic():
            audit.record(verb, actor=None, object_type="test.thing", object_id=i, after={"n": i})


def raw(*statements):
    """Run SQL as the attacker: (sql, params) pairs or plain SQL, triggers off around them on PostgreSQL."""
    postgres = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        if postgres:
            for table in TABLES:
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for statement in statements:
            sql, params = (statement, ()) if isinstance(statement, str) else statement
            if not postgres and sql.startswith("TRUNCATE "):
                for table in sql[len("TRUNCATE ") :].split(","):
                    cursor.execute(f"DELETE FROM {table.strip()}")
                continue
            cursor.execute(sql, params)
        if postgres:
            for table in TABLES:
                cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def by_seq(seq: int) -> AuditEvent:
    return AuditEvent.objects.get(seq=seq)


def rewrite_from(seq: int, *, after=None, move_head: bool = True):
    """Edit the event at ``seq`` (its ``after``) and recompute every later hash so the chain links up
    again; then point the chain head at the forged last hash, as a careful forger would."""
    prev = by_seq(seq - 1).hash if seq > 1 else hashing.GENESIS
    last = AuditEvent.objects.order_by("-seq").first().seq
    statements = []
    for position in range(seq, last + 1):
        event = by_seq(position)
        values = hashing.values_of(event)
        values.update(prev_hash=prev, after=after if position == seq else event.after)
        digest = hashing.event_hash(values)
        statements.append(
            (
                "UPDATE audit_auditevent SET after = %s, prev_hash = %s, hash = %s WHERE id = %s",
                [json.dumps(values["after"]), prev, digest, event.pk],
            )
        )
        prev = digest
    if move_head:
        statements.append(("UPDATE audit_chainhead SET seq = %s, hash = %s WHERE id = 1", [last, prev]))
    raw(*statements)


def kinds(result) -> list[tuple[str, int | None]]:
    return [(p.kind, p.seq) for p in result.problems]
