"""Telling a person something: a ``Notification`` row (shown in the portal as their preferences say),
a ``Delivery`` queued for mail (sent by ``notifications.tasks``, never in the caller's transaction), and
the bell's new count pushed to their own live group after commit. Marking read, for the page."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core import live
from core.queue import enqueue_on_commit
from notifications.models import Delivery, Notification
from notifications.preferences import channels_for
from tenancy.roles import Role

SEND_TASK = "notifications.tasks.send_delivery"


def platform_admins():
    """Active platform admins (a superuser counts as one): who is told of quota requests and the fleet."""
    User = get_user_model()
    admins = Q(is_superuser=True) | Q(memberships__role=Role.PLATFORM_ADMIN, memberships__tenant__isnull=True)
    return User.objects.filter(is_active=True).filter(admins).distinct().order_by("pk")


def notify(
    recipient,
    kind: str,
    *,
    title: str,
    body: str = "",
    link: str = "",
    desktop=None,
    object_type: str = "",
    object_id="",
    data: dict | None = None,
) -> Notification | None:
    """Tell ``recipient`` about something, in the portal and/or by mail as their preferences for ``kind``
    say (None: they want neither). Writes in the caller's transaction (its own when there is none):
    nothing is told of a change that rolled back, and the mail is queued, not sent."""
    in_portal, by_email = channels_for(recipient, kind)
    mail = by_email and bool(recipient.email) and recipient.is_active
    if not (in_portal or mail):
        return None
    with transaction.atomic():
        notification = Notification.objects.create(
            recipient=recipient,
            kind=kind,
            title=title[:200],
            body=body,
            link=link[:300],
            desktop=desktop,
            object_type=object_type,
            object_id=str(object_id),
            data=data or {},
            in_portal=in_portal,
        )
        if mail:
            queue_mail(recipient, kind, notification=notification)
        if in_portal:
            announce_on_commit(recipient.pk, notification)
    return notification


def queue_mail(recipient, kind: str, *, notification: Notification | None = None, data: dict | None = None):
    """A mail for ``recipient`` waiting to be sent; its first attempt is queued with the transaction."""
    delivery = Delivery.objects.create(
        kind=kind, notification=notification, recipient=recipient, to_address=recipient.email, data=data or {}
    )
    enqueue_on_commit(SEND_TASK, delivery.pk)
    return delivery


def unread_count(user) -> int:
    return Notification.objects.shown_to(user).unread().count()


def _payload(user_id: int, notification: Notification | None) -> dict:
    payload = {"unread": Notification.objects.filter(recipient_id=user_id, in_portal=True).unread().count()}
    if notification is not None:
        payload.update(id=notification.pk, kind=notification.kind, title=notification.title, link=notification.link)
    return payload


def announce_on_commit(user_id: int, notification: Notification | None = None) -> None:
    """After commit, tell the person's open pages (their own live group only) the bell's count, and
    what is new. The count is read then, so it is the committed one."""
    event = "notification" if notification is not None else "notification.read"
    transaction.on_commit(lambda: live.publish(live.user_group(user_id), event, _payload(user_id, notification)))


def mark_read(user, notification_id: int) -> bool:
    """Mark one of ``user``'s own notifications read (others' are not found: False)."""
    with transaction.atomic():
        changed = Notification.objects.shown_to(user).unread().filter(pk=notification_id).update(read_at=timezone.now())
        if changed:
            announce_on_commit(user.pk)
    return bool(changed)


def mark_all_read(user) -> int:
    with transaction.atomic():
        changed = Notification.objects.shown_to(user).unread().update(read_at=timezone.now())
        if changed:
            announce_on_commit(user.pk)
    return changed
