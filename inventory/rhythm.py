"""Each host's worker keeps its own sampling rhythm: no central task hands out one sample per host per
interval (at 1,213 hosts that kept the default worker busy most of every interval).

A worker that consumes ``host.<name>`` queues starts, when it is ready, a thread that every
PORTAL_SAMPLE_INTERVAL_S queues ``sample_utilization`` on its own hosts' queues (expiring at the next
round), so the sample itself still runs in the process that alone touches the host's libvirt. Hosts
are offset within the interval by their id, so a fleet's rounds do not all land at once.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections

log = logging.getLogger(__name__)
#: The thread re-reads which of its hosts are reachable this often.
REFRESH_S = 60.0


class SamplingRhythm:
    def __init__(self, queues: list[str], task):
        self.task = task  # inventory.tasks.sample_utilization
        self.names = [q.removeprefix("host.") for q in queues if q.startswith("host.")]
        self.hosts: list[tuple[int, str]] = []
        self.read_at = 0.0
        self.stop = threading.Event()

    def due_hosts(self) -> list[tuple[int, str]]:
        from inventory.models import Host

        if time.monotonic() - self.read_at > REFRESH_S or not self.read_at:
            self.hosts = [(h.pk, h.queue) for h in Host.objects.reachable().filter(name__in=self.names).only("name")]
            self.read_at = time.monotonic()
        return self.hosts

    def tick(self) -> int:
        """Queue one sample on each of this worker's reachable hosts; how many were queued."""
        hosts = self.due_hosts()
        for host_id, queue in hosts:
            self.task.apply_async(args=[host_id], queue=queue, expires=settings.PORTAL_SAMPLE_INTERVAL_S)
        return len(hosts)

    def run(self) -> None:
        interval = float(settings.PORTAL_SAMPLE_INTERVAL_S)
        offset = (sum(map(ord, ",".join(self.names))) % 100) / 100 * interval
        while not self.stop.is_set():
            now = time.time()
            self.stop.wait(interval - ((now - offset) % interval))
            if self.stop.is_set():
                return
            try:
                close_old_connections()  # this thread's own connection, as a request's
                self.tick()
            except Exception as exc:  # noqa: BLE001 - a database blip skips a round, it does not end sampling
                log.warning("sampling rhythm of %s: %s", ", ".join(self.names), exc)
                self.read_at = 0.0


def start(consumer, task) -> SamplingRhythm | None:
    """On ``worker_ready`` (``inventory.tasks``): a worker of host queues starts sampling them."""
    queues = [q.name for q in getattr(getattr(consumer, "task_consumer", None), "queues", ())]
    rhythm = SamplingRhythm(queues, task)
    if not rhythm.names:
        return None  # the default worker samples nothing
    threading.Thread(target=rhythm.run, name="sampling-rhythm", daemon=True).start()
    log.info("sampling %s every %s s", ", ".join(rhythm.names), settings.PORTAL_SAMPLE_INTERVAL_S)
    return rhythm
