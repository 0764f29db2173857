"""The append-only record of every change made through the portal."""

from __future__ import annotations

from django.db import models
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
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Audit events are append-only; they cannot be deleted.")
