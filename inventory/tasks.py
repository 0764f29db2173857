"""Host work that must run next to the host's libvirt: each task goes to the host's own queue."""

from __future__ import annotations

from celery import shared_task
from celery.utils.log import get_task_logger

from inventory.drivers.base import DriverError
from inventory.models import Host
from inventory.services.sync import sync_host as sync_host_service

log = get_task_logger(__name__)


@shared_task(bind=True, acks_late=True, soft_time_limit=60, time_limit=90, max_retries=5)
def sync_host(self, host_id: int) -> str | None:
    """Re-read one host. A host that is unreachable retries with backoff; a permanent error is logged
    and kept on the host row (``last_sync_error``)."""
    host = Host.objects.filter(pk=host_id).first()
    if host is None:
        return None  # deleted since it was queued
    try:
        return sync_host_service(host).summary()
    except DriverError as exc:
        if exc.retryable:
            raise self.retry(exc=exc, countdown=min(300, 5 * 2**self.request.retries)) from exc
        log.warning("sync of %s failed: %s", host.name, exc)
        return None


@shared_task
def sync_all_hosts() -> int:
    """Beat entry: queue a sync on every host's own queue."""
    count = 0
    for host in Host.objects.only("id", "name"):
        sync_host.apply_async(args=[host.id], queue=host.queue)
        count += 1
    return count
