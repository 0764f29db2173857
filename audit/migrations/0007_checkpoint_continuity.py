"""Checkpoints carry their own continuity: a position ``number`` (1, 2, 3, …), the count of events they
cover and the previous checkpoint's signature, all signed (audit.signing).

Existing checkpoints are numbered in seq order and signed again over the new fields, but only those whose
old signature (over ``seq:hash:time``) still holds; a checkpoint that was already forged keeps its old,
wrong signature, so verification still reports it. The anchor is not written here: the next checkpoint
appends every checkpoint the anchor lacks, from the first (audit.checkpoints.anchor_pending)."""

import hashlib
import hmac
from datetime import timezone

from django.conf import settings
from django.db import migrations, models

from audit.signing import sign_checkpoint


def _old_signature(check):
    stamp = check.created_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    message = f"{check.seq}:{check.hash}:{stamp}".encode()
    return hmac.new(settings.AUDIT_CHECKPOINT_KEY.encode(), message, hashlib.sha256).hexdigest()


def number_and_sign(apps, schema_editor):
    Checkpoint = apps.get_model("audit", "Checkpoint")
    AuditEvent = apps.get_model("audit", "AuditEvent")
    prev = "0" * 64
    for number, check in enumerate(Checkpoint.objects.order_by("seq", "id"), start=1):
        check.number = number
        check.events = AuditEvent.objects.filter(seq__isnull=False, seq__lte=check.seq).count()
        check.prev_signature = prev
        if hmac.compare_digest(check.signature, _old_signature(check)):
            check.signature = sign_checkpoint(check)
        check.save(update_fields=["number", "events", "prev_signature", "signature"])
        prev = check.signature


class Migration(migrations.Migration):
    dependencies = [("audit", "0006_exportjob_moved_to_reports")]

    operations = [
        migrations.AlterModelOptions(name="checkpoint", options={"ordering": ["number"]}),
        migrations.AddField(model_name="checkpoint", name="number", field=models.BigIntegerField(null=True)),
        migrations.AddField(model_name="checkpoint", name="events", field=models.BigIntegerField(default=0)),
        migrations.AddField(
            model_name="checkpoint", name="prev_signature", field=models.CharField(default="", max_length=64)
        ),
        migrations.RunPython(number_and_sign, migrations.RunPython.noop),
    ]
