"""``manage.py relay_outbox``: send queued work the broker did not take at commit time (core.outbox).

One small loop: every ``--interval`` seconds it sends unsent outbox rows, oldest first, and once an
hour deletes rows sent more than a day ago. A database or broker that is away is waited for, never
fatal. ``make run`` starts one; more than one is safe (rows are claimed before they are sent)."""

from __future__ import annotations

import logging
import signal
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from core import outbox

log = logging.getLogger("core.outbox")


class Command(BaseCommand):
    help = "Send queued background work to the broker (the transactional outbox), until stopped."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds (default 1)")
        parser.add_argument("--once", action="store_true", help="one round, then exit (prints the counts)")

    def handle(self, *args, interval: float, once: bool, **options):
        if once:
            self.stdout.write(str(outbox.relay_pending()))
            return
        stopping = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.append(True))
        self.stdout.write(f"Outbox relay: sending unsent work every {interval:g} s")
        self.stdout.flush()
        pruned_at = 0.0
        while not stopping:
            try:
                counts = outbox.relay_pending()
                if counts["sent"] or counts["failed"]:
                    log.info("outbox: %s", counts)
                if time.monotonic() - pruned_at > 3600:
                    pruned_at = time.monotonic()
                    outbox.prune_sent()
            except Exception as exc:  # noqa: BLE001 - the database may be away for a while: wait, retry
                log.warning("outbox relay round failed, retrying: %s", exc)
                close_old_connections()
            time.sleep(interval)
