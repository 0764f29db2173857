"""Sending the outbox (``core.models.OutboxMessage``) to the broker.

Delivery is at least once, in order of the rows, and never lost once committed:

- ``add`` writes the row in the caller's transaction and, after commit, tries to send it at once
  (``send_one``): the normal path costs one broker round trip, as a plain after-commit send did.
- Each send first *claims* the row with a conditional update (``claimed_until`` in the future), then
  publishes, then marks it sent. Two senders never publish one row at the same time. A sender that dies
  between publishing and marking leaves a claim that lapses after ``CLAIM_S``, and the row is sent
  again: every task the portal queues takes an id and is idempotent (it re-reads the row and checks its
  status under a conditional update), so a second delivery does nothing twice.
- When the broker is away the after-commit send fails quietly (logged) and the request answers what
  really happened: the change is accepted. ``relay_pending`` (the ``manage.py relay_outbox`` process,
  started by ``make run``) retries unsent rows every second, so the work reaches the hosts within about
  a second of the broker's return.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

from core.models import OutboxMessage

log = logging.getLogger(__name__)

#: How long a sender holds a row it is sending; a sender that died lets it lapse and another resends.
CLAIM_S = 30
#: Rows younger than this are left to their own after-commit send (the relay picks up what that missed).
GRACE_S = 1.0
#: Sent rows are kept this long (for the record), then deleted by the relay.
KEEP_SENT = timedelta(days=1)


def publish(task_path: str, args: list, queue: str | None = None) -> None:
    """Send to the broker now; raises when it cannot take it. No publish retries here: a broker that is
    down fails at once (see CELERY_BROKER_TRANSPORT_OPTIONS), and the relay retries."""
    import_string(task_path).apply_async(args=list(args), queue=queue or None, retry=False)


def add(task_path: str, *args, queue: str | None = None) -> OutboxMessage:
    message = OutboxMessage.objects.create(task=task_path, args=list(args), queue=queue or "")
    transaction.on_commit(lambda: send_one(message.pk))
    return message


def _unclaimed(now) -> Q:
    return Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)


def _claim(pk: int) -> bool:
    now = timezone.now()
    unsent = OutboxMessage.objects.filter(pk=pk, sent_at__isnull=True).filter(_unclaimed(now))
    return bool(unsent.update(claimed_until=now + timedelta(seconds=CLAIM_S)))


SENT, BUSY, FAILED = "sent", "busy", "failed"


def send_one(pk: int) -> str:
    """Claim, publish and mark one row. BUSY: another sender holds it or it was sent already; FAILED:
    the broker refused it (the row is released for the relay, with the error kept)."""
    if not _claim(pk):
        return BUSY
    message = OutboxMessage.objects.get(pk=pk)
    try:
        publish(message.task, message.args, message.queue)
    except Exception as exc:  # noqa: BLE001 - any broker failure: the row stays for the relay
        log.warning("outbox %s (%s): the broker did not take it, the relay will retry: %s", pk, message.task, exc)
        OutboxMessage.objects.filter(pk=pk).update(
            claimed_until=None, attempts=message.attempts + 1, last_error=str(exc)[:300]
        )
        return FAILED
    OutboxMessage.objects.filter(pk=pk).update(
        sent_at=timezone.now(), claimed_until=None, attempts=message.attempts + 1, last_error=""
    )
    return SENT


def pending(now=None):
    """Unsent rows old enough to be the relay's (their own after-commit send had its chance)."""
    now = now or timezone.now()
    old_enough = OutboxMessage.objects.filter(sent_at__isnull=True, created_at__lte=now - timedelta(seconds=GRACE_S))
    return old_enough.filter(_unclaimed(now))


def relay_pending(limit: int = 500) -> dict:
    """Send what is pending, oldest first; stop at the first broker failure (it is down: the next round
    tries again). Returns counts: sent, failed, left (unsent rows, young ones included)."""
    sent = failed = 0
    for pk in list(pending().order_by("id").values_list("pk", flat=True)[:limit]):
        outcome = send_one(pk)
        if outcome == SENT:
            sent += 1
        elif outcome == FAILED:
            failed += 1
            break
    return {"sent": sent, "failed": failed, "left": OutboxMessage.objects.filter(sent_at__isnull=True).count()}


def prune_sent(now=None) -> int:
    now = now or timezone.now()
    deleted, _ = OutboxMessage.objects.filter(sent_at__lt=now - KEEP_SENT).delete()
    return deleted
