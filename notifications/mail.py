"""Sending the queued mail (``Delivery`` rows): rendered when sent, in text and HTML, in the recipient's
time zone (``tenancy.preferences``), with absolute links under PORTAL_PUBLIC_URL.

A send first claims its row with a conditional update, so two workers never send one row at once. A
mail server that refuses or is down is one failed attempt: the row keeps the error and the time of its
next attempt (backoff), and ``send_due`` (a beat task) tries again; after MAX_ATTEMPTS it is given up
and shows as failed on /notifications/deliveries/ until an admin retries it. Nothing is lost, and the
change that queued it had committed long before."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from core import timezones
from notifications import invitations
from notifications.models import INVITATION, Delivery, DeliveryStatus, NotificationKind
from tenancy.preferences import time_zone_of

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
#: How long a sender holds a row it is sending (longer than the SMTP timeout).
CLAIM = timedelta(seconds=120)
SENT, RETRY, GAVE_UP, BUSY = "sent", "retry", "gave-up", "busy"


def backoff(attempts: int) -> timedelta:
    """The wait before attempt ``attempts + 1``: 1, 2, 4 … minutes, at most an hour (10 tries ≈ 6 h)."""
    return timedelta(minutes=min(60, 2 ** max(0, attempts - 1)))


def absolute(path: str) -> str:
    """A portal path as a link that works from a mailbox: under the deployment's public URL."""
    if not path or "://" in path:
        return path
    return settings.PORTAL_PUBLIC_URL.rstrip("/") + path


def _times(data: dict) -> dict:
    out = {}
    for key in ("expires_at", "stop_at", "ended_at"):
        if data.get(key):
            out[key] = datetime.fromisoformat(data[key])
    return out


def _notification_context(delivery: Delivery) -> tuple[str, dict]:
    n = delivery.notification
    context = {
        "notification": n,
        "link": absolute(n.link),
        "extend_link": "",
        "preferences_link": absolute(reverse("notifications:list") + "#preferences"),
        **_times(n.data),
    }
    if n.kind == NotificationKind.DESKTOP_EXPIRING and n.data.get("extendable") and n.desktop_id:
        # a mail link cannot POST: it opens the notification, whose "Extend by 1 h" button is one click
        context["extend_link"] = absolute(reverse("notifications:open", args=[n.pk]))
    return "notifications/email/notification", context


def render(delivery: Delivery) -> tuple[str, str, str]:
    """Subject, text and HTML of a delivery, in its recipient's zone (UTC when they chose none)."""
    if delivery.kind == INVITATION:
        template, context = "notifications/email/invitation", invitations.context(delivery)
        context["link"] = absolute(context["path"])
    else:
        template, context = _notification_context(delivery)
    context["public_url"] = settings.PORTAL_PUBLIC_URL
    with timezone.override(timezones.zone_named(time_zone_of(delivery.recipient))):
        context["now"] = timezone.now()
        text = render_to_string(template + ".txt", context)
        html = render_to_string(template + ".html", context)
    subject = context.get("subject") or delivery.notification.title
    return f"[GPU Portal] {subject}", text, html


def _claim(pk: int, now) -> bool:
    free = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    rows = Delivery.objects.filter(pk=pk, status=DeliveryStatus.PENDING).filter(free)
    return bool(rows.update(claimed_until=now + CLAIM))


def send(delivery_id: int) -> str:
    """One attempt at one delivery: SENT, RETRY (kept, with its error and next attempt), GAVE_UP, or
    BUSY (another sender holds it, or it is no longer pending)."""
    now = timezone.now()
    if not _claim(delivery_id, now):
        return BUSY
    delivery = Delivery.objects.select_related("recipient", "notification").get(pk=delivery_id)
    try:
        if not delivery.recipient.is_active:
            raise RuntimeError("the account was deactivated before the mail could be sent")
        subject, text, html = render(delivery)
        message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [delivery.to_address])
        message.attach_alternative(html, "text/html")
        message.send(fail_silently=False)
    except Exception as exc:  # noqa: BLE001 - any failure is one attempt, kept for the admins to see
        return _failed(delivery, exc)
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.SENT,
        sent_at=timezone.now(),
        attempts=delivery.attempts + 1,
        last_error="",
        claimed_until=None,
    )
    return SENT


def _failed(delivery: Delivery, exc: Exception) -> str:
    attempts = delivery.attempts + 1
    gave_up = attempts >= MAX_ATTEMPTS or not delivery.recipient.is_active
    error = f"{type(exc).__name__}: {exc}"[:500]
    log.warning("mail %s to %s, attempt %s: %s", delivery.pk, delivery.to_address, attempts, error)
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.FAILED if gave_up else DeliveryStatus.PENDING,
        attempts=attempts,
        last_error=error,
        next_attempt_at=timezone.now() + backoff(attempts),
        claimed_until=None,
    )
    return GAVE_UP if gave_up else RETRY


def due(now=None):
    """Pending deliveries whose next attempt is due (a first attempt that never ran counts after a minute:
    the broker may have lost it)."""
    now = now or timezone.now()
    first_missed = Q(next_attempt_at__isnull=True, created_at__lte=now - timedelta(minutes=1))
    return Delivery.objects.filter(status=DeliveryStatus.PENDING).filter(Q(next_attempt_at__lte=now) | first_missed)


def send_due(now=None, limit: int = 200) -> dict:
    """Try every due delivery once, oldest first. Returns the counts of each outcome."""
    counts = {SENT: 0, RETRY: 0, GAVE_UP: 0, BUSY: 0}
    for pk in list(due(now).order_by("created_at", "pk").values_list("pk", flat=True)[:limit]):
        counts[send(pk)] += 1
    return counts


def retry(delivery: Delivery) -> bool:
    """An admin's "send again" of a given-up or waiting delivery: a fresh set of attempts, starting now."""
    return bool(
        Delivery.objects.filter(pk=delivery.pk)
        .exclude(status=DeliveryStatus.SENT)
        .update(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=None, claimed_until=None)
    )
