"""The transactional outbox: background work asked for by a change is saved with the change.

A service that wants a task run after its transaction (``core.queue.enqueue_on_commit``) writes an
``OutboxMessage`` row in that same transaction: the change and the order to act on it are committed
together or not at all. Right after commit the message is sent to the broker; when the broker is away
the row stays unsent and ``core.outbox.relay_pending`` (the ``relay_outbox`` process) sends it as soon
as the broker is back. See core/outbox.py for the delivery guarantees."""

from __future__ import annotations

from django.db import models


class OutboxMessage(models.Model):
    task = models.CharField(max_length=200, help_text="dotted path of the Celery task")
    args = models.JSONField(default=list)
    queue = models.CharField(max_length=200, blank=True, default="", help_text="empty: the task's default queue")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    #: A sender holds the row until then (claim, send, mark sent); a sender that died lets it lapse.
    claimed_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["id"], name="outbox_unsent", condition=models.Q(sent_at__isnull=True)),
        ]

    def __str__(self) -> str:
        state = "sent" if self.sent_at else "pending"
        return f"{self.task}{tuple(self.args)} ({state})"
