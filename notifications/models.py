"""What people are told: a notification per person and event (shown in the portal, mailed or both, as
their preferences say), the mail deliveries that carry them, and the fleet problems admins were told of.

Rows are written in the transaction of the change that caused them (``notifications.events``), so a
change that rolled back tells nobody. Mail is never sent in that transaction: a ``Delivery`` row waits
for ``notifications.mail`` (a Celery task), which retries it with backoff until it is sent or given up,
and the platform admins see the ones that are late or failed (/notifications/deliveries/)."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone


class NotificationKind(models.TextChoices):
    DESKTOP_READY = "desktop-ready", "Desktop ready"
    DESKTOP_FAILED = "desktop-failed", "Desktop failed"
    DESKTOP_EXPIRING = "desktop-expiring", "Desktop expiring soon"
    DESKTOP_EXPIRED = "desktop-expired", "Desktop expired"
    HOST_MAINTENANCE = "host-maintenance", "Host maintenance or drain affecting a desktop"
    QUOTA_DECIDED = "quota-decided", "Your quota request was decided"
    QUOTA_REQUESTED = "quota-requested", "New quota request (platform admins)"
    FLEET_PROBLEM = "fleet-problem", "Fleet problem: host offline or sync failed (platform admins)"


#: Kinds only platform admins are sent (others never see them on the preferences form).
ADMIN_KINDS = (NotificationKind.QUOTA_REQUESTED, NotificationKind.FLEET_PROBLEM)

#: Each kind's defaults (in the portal, by mail) for someone who never changed them.
DEFAULTS = {
    NotificationKind.DESKTOP_READY: (True, True),
    NotificationKind.DESKTOP_FAILED: (True, True),
    NotificationKind.DESKTOP_EXPIRING: (True, True),
    NotificationKind.DESKTOP_EXPIRED: (True, False),
    NotificationKind.HOST_MAINTENANCE: (True, True),
    NotificationKind.QUOTA_DECIDED: (True, True),
    NotificationKind.QUOTA_REQUESTED: (True, True),
    NotificationKind.FLEET_PROBLEM: (True, True),
}


class NotificationQuerySet(models.QuerySet):
    def shown_to(self, user):
        """A person's own notifications shown in the portal: nobody reads anyone else's."""
        return self.filter(recipient_id=user.pk, in_portal=True)

    def unread(self):
        return self.filter(read_at__isnull=True)


class Notification(models.Model):
    """One thing one person is told. ``in_portal`` False: mailed only (their preference)."""

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=32, choices=NotificationKind.choices)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    link = models.CharField(max_length=300, blank=True, help_text="A path in the portal (made absolute in mail).")
    desktop = models.ForeignKey(
        "allocations.Desktop", null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications"
    )
    object_type = models.CharField(max_length=64, blank=True, help_text="What it is about: app_label.model.")
    object_id = models.CharField(max_length=64, blank=True)
    #: Values the mail renders in the person's zone (times as ISO 8601): ``expires_at``, ``stop_at``, ...
    data = models.JSONField(default=dict, blank=True)
    in_portal = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    read_at = models.DateTimeField(null=True, blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["recipient", "read_at"], name="notification_unread_idx")]

    def __str__(self) -> str:
        return f"{self.recipient_id}: {self.title}"

    @property
    def is_read(self) -> bool:
        return self.read_at is not None

    def _time(self, key: str) -> datetime | None:
        value = (self.data or {}).get(key)
        return datetime.fromisoformat(value) if value else None

    @property
    def expires_at(self) -> datetime | None:
        return self._time("expires_at")

    @property
    def stop_at(self) -> datetime | None:
        return self._time("stop_at")


class NotificationPreference(models.Model):
    """A person's choice for one kind; kinds without a row follow ``DEFAULTS``."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences"
    )
    kind = models.CharField(max_length=32, choices=NotificationKind.choices)
    in_portal = models.BooleanField(default=True)
    by_email = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "kind"], name="one_preference_per_kind")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.kind}: portal={self.in_portal} email={self.by_email}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Waiting to be sent"
    SENT = "sent", "Sent"
    FAILED = "failed", "Given up"


INVITATION = "invitation"


class Delivery(models.Model):
    """One mail to send: a notification's, or an invitation to set a password (``kind`` "invitation",
    no notification). Rendered when it is sent, in the recipient's zone."""

    kind = models.CharField(max_length=32)
    notification = models.ForeignKey(
        Notification, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="deliveries")
    to_address = models.EmailField()
    data = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Empty: at once.")
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due_idx")]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.kind} to {self.to_address} ({self.status})"


class FleetAlert(models.Model):
    """A fleet problem the platform admins were told of, open until it is gone (each appearance is told
    once). ``key`` is its kind and subject ("host_offline:lab-a40")."""

    key = models.CharField(max_length=200, db_index=True)
    detail = models.CharField(max_length=600, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.key} ({'closed' if self.closed_at else 'open'})"
