"""Link the events written before the hash chain existed, in id order, and set the chain head.

The append-only trigger refuses UPDATE, so on PostgreSQL it is switched off for this one
backfill, inside the migration's transaction, and switched on again before it commits."""

import hashlib
import json
from datetime import timezone

from django.db import migrations

FIELDS = ("seq", "occurred_at", "actor_id", "actor_username", "tenant_id", "tenant_name", "verb", "object_type",
          "object_id", "object_repr", "before", "after", "source_ip", "request_id", "prev_hash")


def _hash(values):
    data = {name: values.get(name) for name in FIELDS}
    data["occurred_at"] = data["occurred_at"].astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    encoded = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()


def chain_existing(apps, schema_editor):
    AuditEvent = apps.get_model("audit", "AuditEvent")
    ChainHead = apps.get_model("audit", "ChainHead")
    postgres = schema_editor.connection.vendor == "postgresql"
    if postgres:
        schema_editor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_append_only")
    seq, prev = 0, "0" * 64
    for event in AuditEvent.objects.filter(seq__isnull=True).order_by("id").iterator(chunk_size=2000):
        seq += 1
        values = {name: getattr(event, name) for name in FIELDS if name not in ("seq", "prev_hash")}
        values.update(seq=seq, prev_hash=prev)
        digest = _hash(values)
        AuditEvent.objects.filter(pk=event.pk).update(seq=seq, prev_hash=prev, hash=digest)
        prev = digest
    ChainHead.objects.update_or_create(pk=1, defaults={"seq": seq, "hash": prev})
    if postgres:
        schema_editor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_auditevent_append_only")


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_hash_chain_and_checkpoints")]

    operations = [migrations.RunPython(chain_existing, migrations.RunPython.noop)]
