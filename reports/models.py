"""Background exports: a job per request, run by a worker, its file kept under var/exports."""

from __future__ import annotations

from django.db import models


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
        db_table = "audit_exportjob"  # the table it had before reports was an app of its own
        ordering = ["-created_at", "-id"]

    #: The object type audit events have always named export jobs by (kept across the move).
    audit_object_type = "audit.exportjob"

    def __str__(self) -> str:
        return f"{self.kind} export #{self.pk} ({self.fmt}, {self.status})"

    @property
    def filename(self) -> str:
        return f"{self.kind}-{self.pk}.{self.fmt}"
