"""The append-only record of every change made through the portal."""

from __future__ import annotations

from django.db import connection, models, transaction
from django.utils import timezone

from audit.hashing import event_hash, values_of


class AppendOnlyError(Exception):
    """Raised when code tries to change or remove an audit event."""


def object_type_of(instance: models.Model) -> str:
    """The type audit events name a row by: ``app.model``, or the name the model kept when it moved
    between apps (``audit_object_type``), so the trail's vocabulary never changes under its readers."""
    return getattr(instance, "audit_object_type", None) or instance._meta.label_lower


class AppendOnlyQuerySet(models.QuerySet):
    """Refuses bulk updates and deletes (the model refuses save-over and delete; on PostgreSQL a trigger
    refuses both from any client, migrations 0002 and 0008)."""

    def update(self, **kwargs):
        raise AppendOnlyError(
            f"{str(self.model._meta.verbose_name_plural).capitalize()} are append-only; they cannot be updated."
        )

    def delete(self):
        raise AppendOnlyError(
            f"{str(self.model._meta.verbose_name_plural).capitalize()} are append-only; they cannot be deleted."
        )


class AuditEventQuerySet(AppendOnlyQuerySet):
    def about(self, instance: models.Model):
        """The events about one row (``object_type_of`` it and its id)."""
        return self.filter(object_type=object_type_of(instance), object_id=str(instance.pk))


class AuditEvent(models.Model):
    """One change: who did what to which object, on behalf of which tenant, from where.

    Guarantees: rows are only ever inserted. The ORM refuses save-over and delete;
    on PostgreSQL a trigger refuses UPDATE and DELETE from any client. People and
    tenants are stored as id plus name at the time (no foreign keys), so deleting
    a user or tenant never has to touch this table.
    """

    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_id = models.BigIntegerField(null=True, blank=True, db_index=True, help_text="User id; empty for the system.")
    actor_username = models.CharField(max_length=150, blank=True)
    tenant_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    tenant_name = models.CharField(max_length=100, blank=True)
    verb = models.CharField(max_length=64, db_index=True, help_text="e.g. host.created, quota.updated.")
    object_type = models.CharField(max_length=64, db_index=True, help_text="app_label.model, e.g. inventory.host.")
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    object_repr = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True, db_index=True)
    # The hash chain: position, the previous event's hash, and SHA-256 over this event's canonical
    # content plus prev_hash (audit.chain). Assigned at insert, under the chain head's row lock.
    seq = models.BigIntegerField(unique=True, null=True, editable=False)
    prev_hash = models.CharField(max_length=64, blank=True, editable=False)
    hash = models.CharField(max_length=64, blank=True, editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object_idx")]

    def __str__(self) -> str:
        who = self.actor_username or "system"
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {who} {self.verb} {self.object_type}#{self.object_id}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("Audit events are append-only; they cannot be updated.")
        with transaction.atomic(savepoint=False):  # inside a caller's transaction: its own, no savepoint
            if self.seq is None:
                self._link()
            super().save(*args, **kwargs)

    def _link(self) -> None:
        """Give this unsaved event its chain position and hash. Must run in the inserting transaction:
        the head row stays locked until commit, so concurrent writers queue here, one position each."""
        # plain SQL: every audited change passes here, inside its transaction (the ORM's query building
        # cost more than these two statements do)
        table = ChainHead._meta.db_table
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        with connection.cursor() as cur:
            cur.execute(f"SELECT seq, hash FROM {table} WHERE id = 1{lock}")
            row = cur.fetchone()
            if row is None:  # the very first event (get_or_create's savepoint only then)
                head, _ = ChainHead.objects.select_for_update().get_or_create(pk=1)
                row = (head.seq, head.hash)
            self.seq = row[0] + 1
            self.prev_hash = row[1]
            self.hash = event_hash(values_of(self))
            cur.execute(f"UPDATE {table} SET seq = %s, hash = %s WHERE id = 1", [self.seq, self.hash])

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Audit events are append-only; they cannot be deleted.")


class ChainHead(models.Model):
    """The single row holding the chain's last position and hash. Locking it serialises chain
    writers, so positions are unique, gap-free and in commit order (no forks)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"audit chain head #{self.seq}"


class Checkpoint(models.Model):
    """A signed record of the chain's head at a moment (HMAC-SHA256 with AUDIT_CHECKPOINT_KEY): its own
    position ``number`` (1, 2, 3, … without gaps), the head's ``seq`` and ``hash``, how many events the
    table held up to it (``events``) and the previous checkpoint's signature, so rewriting history before
    it, even with the hashes recomputed, no longer matches, and removing a checkpoint breaks the next.

    Guarantees: append-only like events (the ORM refuses save-over, update and delete; on PostgreSQL a
    trigger refuses UPDATE and DELETE). Each one is also appended to the anchor outside the database
    once it commits (``audit.checkpoints``), which is what catches a database administrator who
    removes or replaces the latest ones."""

    number = models.BigIntegerField(unique=True)
    seq = models.BigIntegerField()
    events = models.BigIntegerField(help_text="Chained events in the table up to seq, when it was signed.")
    hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    prev_signature = models.CharField(max_length=64, help_text="The previous checkpoint's signature (zeros: none).")
    signature = models.CharField(max_length=64)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["number"]

    def __str__(self) -> str:
        return f"checkpoint {self.number} at seq {self.seq}, {self.created_at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("Audit checkpoints are append-only; they cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Audit checkpoints are append-only; they cannot be deleted.")
