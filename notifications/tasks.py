"""Thin tasks over ``notifications.mail`` and ``notifications.fleet``: each takes an id or nothing, and the
service decides what is due (status in the database, never asked of the broker)."""

from __future__ import annotations

from celery import shared_task

from notifications import fleet, mail


@shared_task(acks_late=True, soft_time_limit=60, time_limit=90)
def send_delivery(delivery_id: int) -> str:
    """One attempt at one queued mail. A failure is kept on the row, and ``send_due`` tries it again
    after its backoff: the retries live in the database, so a lost message loses no mail."""
    return mail.send(delivery_id)


@shared_task(soft_time_limit=240, time_limit=280)
def send_due() -> dict:
    """Beat: every queued mail whose next attempt is due."""
    return mail.send_due()


@shared_task(soft_time_limit=50, time_limit=60)
def check_fleet() -> dict:
    """Beat: tell the platform admins of hosts gone offline or failing to sync."""
    return fleet.check_fleet()
