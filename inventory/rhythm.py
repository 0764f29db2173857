"""Each host's worker keeps its own rhythm: no central task hands out one sample or one heartbeat per
host per interval (at 1,213 hosts that kept the default worker busy most of every interval).

A worker that consumes ``host.<name>`` queues starts, when it is ready, a thread that every
PORTAL_SAMPLE_INTERVAL_S queues ``sample_utilization`` on its own reachable hosts' queues (expiring at
the next round), and every PORTAL_HEARTBEAT_INTERVAL_S queues ``heartbeat`` on its own hosts in
service, offline ones included (a heartbeat is how an offline host comes back). Both still run in the
process that alone touches the host's libvirt. Hosts are offset within the interval by their names,
so a fleet's rounds do not all land at once. Beat keeps only ``check_heartbeats``, which marks the
silent ones offline.
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
#: Seconds between two heartbeats of a host unless PORTAL_HEARTBEAT_INTERVAL_S says otherwise.
HEARTBEAT_INTERVAL_S = 30.0


def heartbeat_interval() -> float:
    return float(getattr(settings, "PORTAL_HEARTBEAT_INTERVAL_S", HEARTBEAT_INTERVAL_S))


#: Slower per-host work each host's worker queues for its own hosts (no beat fan-out of one task per host:
#: at 1,213 hosts those held the one default worker for seconds and made fleet updates expire). Filled by
#: ``every`` where the tasks are defined: (interval in seconds, task taking a host id, "reachable" | "active").
EVERY: list[tuple[float, object, str]] = []


def every(interval_s: float, task, *, hosts: str = "reachable") -> None:
    """Have each host's worker queue ``task(host_id)`` on its own hosts every ``interval_s`` (first after
    one interval, as beat did), on its ``reachable`` hosts or all its ``active`` ones."""
    if all(existing is not task for _, existing, _ in EVERY):
        EVERY.append((float(interval_s), task, hosts))


class SamplingRhythm:
    def __init__(self, queues: list[str], task, heartbeat=None):
        self.task = task  # inventory.tasks.sample_utilization
        self.heartbeat = heartbeat  # inventory.tasks.heartbeat
        self.names = [q.removeprefix("host.") for q in queues if q.startswith("host.")]
        self.hosts: list[tuple[int, str]] = []  # reachable: sampled
        self.active: list[tuple[int, str]] = []  # in service, offline too: heartbeats
        self.read_at = 0.0
        self.sampled_at: float | None = None  # monotonic times of the last sampling and heartbeat rounds
        self.beat_at: float | None = None
        self.every_at: dict[int, float] = {}  # EVERY's index -> monotonic time of its last round
        self.stop = threading.Event()

    def due_hosts(self) -> list[tuple[int, str]]:
        from inventory.models import Host, HostState

        if time.monotonic() - self.read_at > REFRESH_S or not self.read_at:
            rows = list(Host.objects.active().filter(name__in=self.names).only("name", "state"))
            self.active = [(h.pk, h.queue) for h in rows]
            self.hosts = [(h.pk, h.queue) for h in rows if h.state != HostState.OFFLINE]  # = reachable()
            self.read_at = time.monotonic()
        return self.hosts

    def period(self) -> float:
        """How often the thread wakes: the shorter of the two intervals."""
        return min(float(settings.PORTAL_SAMPLE_INTERVAL_S), heartbeat_interval())

    def _due(self, last: float | None, interval: float, now: float) -> bool:
        # half a wake-up of slack: a wake-up a few ms early does not put the work off a whole period
        return last is None or now - last >= interval - self.period() / 2

    def tick(self, now: float | None = None) -> int:
        """Queue one sample on each of this worker's reachable hosts once a sampling interval has passed
        since the last, and one heartbeat on each of its hosts in service once a heartbeat interval has
        (both on the first tick). Returns how many samples were queued."""
        now = time.monotonic() if now is None else now
        hosts = self.due_hosts()
        sampled = 0
        interval = float(settings.PORTAL_SAMPLE_INTERVAL_S)
        if self._due(self.sampled_at, interval, now):
            self.sampled_at = now
            for host_id, queue in hosts:
                self.task.apply_async(args=[host_id], queue=queue, expires=interval)
            sampled = len(hosts)
        beat = heartbeat_interval()
        if self.heartbeat is not None and self._due(self.beat_at, beat, now):
            self.beat_at = now
            for host_id, queue in self.active:
                self.heartbeat.apply_async(args=[host_id], queue=queue, expires=beat)
        for index, (period, task, which) in enumerate(EVERY):
            last = self.every_at.setdefault(index, now)  # the first round one period after start
            if self._due(last, period, now) and now > last:
                self.every_at[index] = now
                for host_id, queue in self.active if which == "active" else hosts:
                    task.apply_async(args=[host_id], queue=queue, expires=period)
        return sampled

    def run(self) -> None:
        interval = self.period()
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
                log.warning("rhythm of %s: %s", ", ".join(self.names), exc)
                self.read_at = 0.0


def start(consumer, task, heartbeat=None) -> SamplingRhythm | None:
    """On ``worker_ready`` (``inventory.tasks``): a worker of host queues samples its own hosts and
    sends their heartbeats."""
    queues = [q.name for q in getattr(getattr(consumer, "task_consumer", None), "queues", ())]
    rhythm = SamplingRhythm(queues, task, heartbeat)
    if not rhythm.names:
        return None  # the default worker samples nothing and sends no heartbeats
    threading.Thread(target=rhythm.run, name="host-rhythm", daemon=True).start()
    log.info(
        "sampling %s every %s s, heartbeats every %s s",
        ", ".join(rhythm.names),
        settings.PORTAL_SAMPLE_INTERVAL_S,
        heartbeat_interval(),
    )
    return rhythm
