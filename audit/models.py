"""The append-only record of every change made through the portal."""

from __future__ import annotations

from django.db import models, transaction
from django.utils import timezone


class AppendOnlyError(Exception):
    """Raised when code tries to change or remove an audit event."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Audit events are append-only; they cannot be updated.")

    def delete(self):
        raise AppendOnlyError("Audit events are append-only; they cannot be deleted.")

    def for_tenant(self, tenant_id: int):
        return self.filter(tenant_id=tenant_id)


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
        from audit import chain  # the chain module needs this model

        with transaction.atomic(savepoint=False):  # inside a caller's transaction: its own, no savepoint
            if self.seq is None:
                chain.link(self)
            super().save(*args, **kwargs)

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
    """A signed record of the chain's head at a moment (HMAC-SHA256 with AUDIT_CHECKPOINT_KEY):
    rewriting history before it, even with the hashes recomputed, no longer matches."""

    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    signature = models.CharField(max_length=64)

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"checkpoint #{self.seq} at {self.created_at:%Y-%m-%d %H:%M}"


class ExportJob(models.Model):
    """A large export run in the background; the file is kept under var/exports until downloaded."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    requested_by_id = models.BigIntegerField()
    requested_by_username = models.CharField(max_length=150)
    kind = models.CharField(max_length=20)  # audit-events | allocations
    fmt = models.CharField(max_length=10)
    filters = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    path = models.CharField(max_length=500, blank=True)
    rows = models.BigIntegerField(null=True, blank=True)
    manifest = models.JSONField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} export #{self.pk} ({self.fmt}, {self.status})"

    @property
    def filename(self) -> str:
        return f"{self.kind}-{self.pk}.{self.fmt}"
