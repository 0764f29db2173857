"""Host work that must run next to the host's libvirt: each task goes to the host's own queue."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready
from celery.utils.log import get_task_logger
from django.conf import settings

from inventory import rhythm
from inventory.drivers.base import DriverError
from inventory.models import Host
from inventory.services import connect, utilization
from inventory.services.hosts import mark_silent_hosts_offline
from inventory.services.sync import sync_host

log = get_task_logger(__name__)


@shared_task(bind=True, acks_late=True, soft_time_limit=60, time_limit=90, max_retries=5)
def sync_host_by_id(self, host_id: int) -> str | None:
    """Re-read one host. A host that is unreachable retries with backoff; a permanent error is logged
    and kept on the host row (``last_sync_error``)."""
    host = Host.objects.filter(pk=host_id).first()
    if host is None:
        return None  # deleted since it was queued
    try:
        return sync_host(host).summary()
    except DriverError as exc:
        if exc.retryable:
            raise self.retry(exc=exc, countdown=min(300, 5 * 2**self.request.retries)) from exc
        log.warning("sync of %s failed: %s", host.name, exc)
        return None


#: Every host is re-read through libvirt this often, by its own worker (``inventory.rhythm``; was a beat fan-out).
SYNC_INTERVAL_S = 300.0
rhythm.every(SYNC_INTERVAL_S, sync_host_by_id, hosts="active")


@shared_task
def sync_all_hosts() -> int:
    """Beat entry: queue a sync on every host's own queue."""
    count = 0
    for host in Host.objects.active().only("id", "name"):  # a retired host is not read again
        sync_host_by_id.apply_async(args=[host.id], queue=host.queue)
        count += 1
    return count


@shared_task(acks_late=False, soft_time_limit=20, time_limit=30)
def heartbeat(host_id: int) -> bool:
    """Runs on the host's queue: proves the host's worker and libvirt both answer."""
    from django.utils import timezone

    host = Host.objects.filter(pk=host_id).first()
    if host is None:
        return False
    try:
        connect.driver_for(host).host_info()
    except DriverError as exc:
        log.warning("heartbeat %s: %s", host.name, exc)
        return False
    Host.objects.filter(pk=host_id).update(last_heartbeat=timezone.now())
    return True


@shared_task
def send_heartbeats() -> int:
    """By hand only (no longer on beat): one heartbeat on every host's queue. Each host's worker sends
    its own hosts' heartbeats in its rhythm instead (``inventory.rhythm``)."""
    hosts = list(Host.objects.active().only("id", "name"))
    for host in hosts:
        heartbeat.apply_async(args=[host.id], queue=host.queue, expires=rhythm.heartbeat_interval())
    return len(hosts)


@shared_task
def check_heartbeats() -> list[str]:
    """Beat: a host silent past PORTAL_HEARTBEAT_TIMEOUT_S goes offline and gets no new desktops."""
    return mark_silent_hosts_offline()


@shared_task(acks_late=False, soft_time_limit=20, time_limit=30)
def sample_utilization(host_id: int) -> int | None:
    """On the host's queue: read its telemetry, store it, push it to dashboards."""
    host = Host.objects.filter(pk=host_id).first()
    if host is None:
        return None
    try:
        return len(utilization.sample_host(host).gpus)
    except DriverError as exc:
        log.warning("telemetry of %s: %s", host.name, exc)
        return None


@worker_ready.connect
def start_sampling_rhythm(sender=None, **kwargs):
    """A worker of host queues samples its own hosts and sends their heartbeats (``inventory.rhythm``)."""
    return rhythm.start(sender, sample_utilization, heartbeat)


@shared_task
def sample_all_hosts() -> int:
    """By hand only (no longer on beat): one sample on every reachable host's queue. Each host's worker
    keeps its own sampling rhythm instead (``inventory.rhythm``), so beat and the default worker hand
    out nothing per host per interval."""
    hosts = list(Host.objects.reachable().only("id", "name"))
    for host in hosts:
        sample_utilization.apply_async(args=[host.id], queue=host.queue, expires=settings.PORTAL_SAMPLE_INTERVAL_S)
    return len(hosts)


@shared_task
def rollup_utilization() -> int:
    return utilization.rollup()


@shared_task
def prune_utilization() -> dict:
    return utilization.prune()


@shared_task(acks_late=False, soft_time_limit=10, time_limit=20)
def publish_fleet_utilization() -> int:
    """Beat: one batched utilization event for every operator dashboard (see utilization.publish_fleet)."""
    return utilization.publish_fleet()
