"""Console tickets (the one-shot right to open a desktop's console) and console sessions (one row per
console opened, for the audit trail's figures and /metrics)."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models


def digest(secret: str) -> str:
    """How tickets and session keys are stored: their SHA-256, hex. The secret itself is kept nowhere."""
    return hashlib.sha256(secret.encode()).hexdigest()


class ConsoleTicket(models.Model):
    """A ticket to open one desktop's console, for one user (and, for browser users, one session).

    Guarantees: only the SHA-256 of the token is stored; a ticket is claimed at most once
    (``used_at`` is set by a conditional UPDATE that must touch one row) and never after
    ``expires_at``."""

    token_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    desktop = models.ForeignKey("allocations.Desktop", on_delete=models.CASCADE, related_name="+")
    session_hash = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of the asking session's key; empty for API-token callers."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"console ticket #{self.pk} for desktop #{self.desktop_id}"


class ConsoleSessionQuerySet(models.QuerySet):
    def open(self):
        return self.filter(closed_at__isnull=True)


class ConsoleSession(models.Model):
    """One console from open to close: who, from where, how long, bytes each way, why it ended.

    Guarantees: ``last_seen`` and the byte counters are brought up to date at least every 10 s while
    it is open, so a row whose ``last_seen`` is older than a minute belongs to a process that died."""

    desktop = models.ForeignKey("allocations.Desktop", on_delete=models.CASCADE, related_name="console_sessions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    opened_at = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    bytes_to_guest = models.PositiveBigIntegerField(default=0)
    bytes_from_guest = models.PositiveBigIntegerField(default=0)
    close_code = models.PositiveIntegerField(null=True, blank=True)
    close_reason = models.CharField(max_length=200, blank=True)

    objects = ConsoleSessionQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at", "-id"]
        indexes = [models.Index(fields=["closed_at", "last_seen"], name="console_open_idx")]

    def __str__(self) -> str:
        return f"console #{self.pk} of desktop #{self.desktop_id}"
