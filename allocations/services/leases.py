"""Who is working on a desktop right now: a lease the worker task holds and renews while it works.

A provision or teardown task takes the desktop's lease before it touches the host (a conditional
update: free, lapsed, or already its own) and a small thread renews it every third of
PORTAL_TASK_LEASE_S while the task runs. A second delivery of the same order finds the lease held and
does nothing; a worker that was killed stops renewing, its lease lapses, and ``requeue_lost`` (beat,
every 15 s) queues the task again through the outbox, so the desktop is picked up within a minute
and its build resumes (it adopts what it built already: ``services.hosting``) or its teardown
finishes. Orders that no worker ever took (a message lost with a broker restart) are queued again
the same way."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from allocations.choices import DesktopStatus
from allocations.models import Desktop
from allocations.services.lifecycle import audit_desktop, enqueue_host_task
from inventory.models import Host

log = logging.getLogger(__name__)

#: The statuses in which a worker task acts on the desktop, and the task that does.
TASK_FOR = {
    DesktopStatus.REQUESTED: "provision",
    DesktopStatus.PROVISIONING: "provision",
    DesktopStatus.STOPPING: "teardown",
}


def lease_span() -> timedelta:
    return timedelta(seconds=settings.PORTAL_TASK_LEASE_S)


def _free(now) -> Q:
    return Q(lease_holder="") | Q(lease_until__isnull=True) | Q(lease_until__lt=now)


def take(desktop_id: int, holder: str, statuses) -> bool:
    """Take the lease if the desktop is in ``statuses`` and the lease is free, lapsed or ``holder``'s."""
    now = timezone.now()
    mine_or_free = _free(now) | Q(lease_holder=holder)
    claim = Desktop.objects.filter(pk=desktop_id, status__in=list(statuses)).filter(mine_or_free)
    return bool(claim.update(lease_holder=holder, lease_until=now + lease_span()))


def renew(desktop_id: int, holder: str, span: timedelta | None = None) -> bool:
    until = timezone.now() + (span or lease_span())
    return bool(Desktop.objects.filter(pk=desktop_id, lease_holder=holder).update(lease_until=until))


def give_back(desktop_id: int, holder: str) -> None:
    Desktop.objects.filter(pk=desktop_id, lease_holder=holder).update(lease_holder="", lease_until=None)


class Lease:
    def __init__(self, desktop_id: int, holder: str):
        self.desktop_id, self.holder = desktop_id, holder
        self.kept = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def keep_for(self, seconds: float) -> None:
        """Hold it ``seconds`` longer after the task ends (a retry is due then), instead of giving it back."""
        self.kept = True
        renew(self.desktop_id, self.holder, timedelta(seconds=seconds) + lease_span())

    def _renew_until_stopped(self) -> None:
        interval = settings.PORTAL_TASK_LEASE_S / 3
        try:
            while not self._stop.wait(interval):
                try:
                    renew(self.desktop_id, self.holder)
                except Exception as exc:  # noqa: BLE001 - the database may blink; the next round retries
                    log.warning("desktop %s: could not renew its lease: %s", self.desktop_id, exc)
                    close_old_connections()
        finally:
            connection.close()  # this thread's own connection

    def start(self) -> None:
        self._thread = threading.Thread(target=self._renew_until_stopped, name=f"lease-{self.desktop_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self.kept:
            give_back(self.desktop_id, self.holder)


@contextlib.contextmanager
def held(desktop_id: int, holder: str, statuses) -> Iterator[Lease | None]:
    """``with held(id, task_id, statuses) as lease:`` — None when another live worker holds it (or the
    desktop moved on): the caller then does nothing."""
    if not take(desktop_id, holder, statuses):
        yield None
        return
    lease = Lease(desktop_id, holder)
    lease.start()
    try:
        yield lease
    finally:
        lease.stop()


def requeue_lost(now=None) -> int:
    """Queue again the task of each desktop in flight whose lease lapsed (its worker died) or whose order
    no worker took for a lease's span (lost with the broker), at most once per span; hosts that are
    offline are left to ``lifecycle.sweep_stuck_desktops``. Returns how many were queued."""
    now = now or timezone.now()
    quiet_since = now - lease_span()
    lost = (
        Desktop.objects.filter(status__in=list(TASK_FOR))
        .filter(_free(now))
        .alias(last_order=Coalesce("requeued_at", "status_changed_at"))
        .filter(last_order__lt=quiet_since)
        .exclude(host__in=Host.objects.offline())
        .select_related("host", "tenant")
    )
    queued = 0
    for desktop in lost:
        with transaction.atomic():
            claimed = (
                Desktop.objects.filter(pk=desktop.pk, status=desktop.status)
                .filter(_free(now))
                .filter(Q(requeued_at__isnull=True) | Q(requeued_at__lt=quiet_since))
                .update(requeued_at=now)
            )
            if not claimed:
                continue
            if desktop.lease_holder:  # a worker had it and stopped renewing: worth an admin's notice
                audit_desktop(
                    "desktop.task_requeued",
                    desktop,
                    actor=None,
                    after={"status": desktop.status, "reason": "its worker stopped answering"},
                )
            enqueue_host_task(TASK_FOR[desktop.status], desktop)
            queued += 1
    if queued:
        log.info("queued again the task of %s desktop(s) whose worker or order was lost", queued)
    return queued
