"""The Celery app. Tasks are discovered from each app's tasks.py; the beat schedule lives here."""

import os

from celery import Celery
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    # Every host is re-read through libvirt; each sync runs on that host's own queue.
    "sync-all-hosts": {"task": "inventory.tasks.sync_all_hosts", "schedule": 300.0},
    "send-heartbeats": {"task": "inventory.tasks.send_heartbeats", "schedule": 30.0},
    "check-heartbeats": {"task": "inventory.tasks.check_heartbeats", "schedule": 30.0},
    "expire-due-desktops": {"task": "allocations.tasks.expire_due", "schedule": 30.0},
    # Often: a desktop whose worker died is picked up again within a minute (allocations/services/leases.py).
    "sweep-stuck-desktops": {"task": "allocations.tasks.sweep_stuck", "schedule": 15.0},
    "reconcile-hosts": {"task": "allocations.tasks.reconcile_all", "schedule": 300.0},
    "sample-utilization": {
        "task": "inventory.tasks.sample_all_hosts",
        "schedule": float(settings.PORTAL_SAMPLE_INTERVAL_S),
    },
    "publish-fleet-utilization": {
        "task": "inventory.tasks.publish_fleet_utilization",
        "schedule": 2.0,
        "options": {"expires": 2.0},  # a late one is worthless: the next is due
    },
    "rollup-utilization": {"task": "inventory.tasks.rollup_utilization", "schedule": 60.0},
    "checkpoint-audit": {"task": "audit.tasks.checkpoint_audit", "schedule": 600.0},
    "prune-utilization": {"task": "inventory.tasks.prune_utilization", "schedule": 3600.0},
}
